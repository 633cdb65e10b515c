FROM alpine
COPY --chown="1000:1000" a b
RUN --mount="type=cache,target=/x" echo
COPY --chown='a b' x y
RUN --mount=type=secret,id=a,"target=/b c" x
