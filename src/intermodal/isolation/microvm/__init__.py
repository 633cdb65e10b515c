"""The micro-VM backend: an OCI runtime (`intermodal-vm-runtime`, runc's command line) that runs a bundle in
a QEMU `-M microvm` guest, as Kata Containers does. The engine drives it exactly like a namespaces runtime."""

# Bundle annotations (config.md#annotations) carrying `--vm-accel` and `--vm-kernel` to the runtime.
ANNOTATION_ACCEL = "org.intermodal.vm.accel"
ANNOTATION_KERNEL = "org.intermodal.vm.kernel"
# In the bundle, which outlives the runtime's state: what `inspect` shows of the VM (accelerator, guest kernel,
# RAM, vCPUs), written by lifecycle.create; the shim adds the ExitReason of a VM that died under its process.
BUNDLE_INFO = "vm.json"
