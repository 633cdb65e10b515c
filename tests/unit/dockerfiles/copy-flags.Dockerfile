FROM alpine
COPY --chown=55:mygroup files* /somedir/
COPY --chown=bin files* /somedir/
COPY --chmod=644 --link a.txt /b.txt
COPY --link=false --parents ./x/**/*.go /out/
COPY --exclude=*.md --exclude=tmp/ . /src/
ADD --chown=1:1 --chmod=0755 --link local.tar.gz /opt/
ADD --keep-git-dir=true https://github.com/moby/buildkit.git#v0.10.1 /buildkit
ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://mirrors.edge.kernel.org/pub/linux/kernel/Historic/linux-0.01.tar.gz /
ADD --exclude=*.tmp src/ /dst/
