FROM alpine
RUN -- --not-a-flag
COPY --link -- --weird-name /dst
