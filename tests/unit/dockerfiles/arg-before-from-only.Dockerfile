ARG A=1
ARG B=$A
FROM alpine:$B
