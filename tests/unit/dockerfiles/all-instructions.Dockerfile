# syntax=docker/dockerfile:1
ARG BASE=debian:12
FROM ${BASE} AS base
MAINTAINER Jane Doe <jane@example.com>
LABEL org.opencontainers.image.title="demo app" version=1.0
ENV APP_HOME=/srv/app PATH=/srv/app/bin:$PATH
WORKDIR $APP_HOME
USER 1000:1000
ADD https://example.com/archive.tar.gz /tmp/
COPY . /srv/app
RUN make build
EXPOSE 8080/tcp 8125/udp
VOLUME /data
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s CMD curl -f http://localhost:8080/ || exit 1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ONBUILD RUN echo triggered
ENTRYPOINT ["/srv/app/bin/server"]
CMD ["--port", "8080"]
