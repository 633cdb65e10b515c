FROM alpine
VOLUME /myvol
VOLUME ["/data", "/logs"]
VOLUME /a /b   /c
