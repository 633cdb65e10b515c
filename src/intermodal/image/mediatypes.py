"""Media types we read and write (OCI image-spec media-types.md, Docker image manifest v2 schema 2)."""

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"

DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"

INDEXES = {OCI_INDEX, DOCKER_MANIFEST_LIST}
MANIFESTS = {OCI_MANIFEST, DOCKER_MANIFEST}
CONFIGS = {OCI_CONFIG, DOCKER_CONFIG}


def layer_compression(media_type: str) -> str:
    """Return 'gzip', 'zstd' or '' (uncompressed) for a layer media type."""
    if media_type in (OCI_LAYER_GZIP, DOCKER_LAYER_GZIP) or media_type.endswith("+gzip"):
        return "gzip"
    if media_type == OCI_LAYER_ZSTD or media_type.endswith("+zstd"):
        return "zstd"
    if media_type in (OCI_LAYER, DOCKER_LAYER) or media_type.endswith(".tar"):
        return ""
    raise ValueError(f"not a layer media type: {media_type}")
