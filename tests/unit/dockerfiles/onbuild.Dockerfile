FROM alpine
ONBUILD ADD . /app/src
ONBUILD RUN /usr/local/bin/python-build --dir /app/src
ONBUILD COPY --from=builder /x /y
ONBUILD ENV A=b
ONBUILD   workdir   /lower
