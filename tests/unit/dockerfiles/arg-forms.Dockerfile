ARG VERSION=latest
ARG CODE_VERSION
FROM busybox:$VERSION
ARG VERSION
ARG user1=someuser buildno=1
ARG QUOTED="a b" 'single q'=x
ARG EMPTY=
RUN echo $VERSION > image_version
