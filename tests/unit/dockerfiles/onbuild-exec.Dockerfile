FROM alpine
ONBUILD RUN ["echo", "hi"]
ONBUILD CMD ["a"]
