FROM alpine
COPY --chown=a\ b x y
RUN --network=host\
  echo hi
