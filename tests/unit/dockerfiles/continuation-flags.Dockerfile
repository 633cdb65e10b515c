FROM alpine
COPY \
  --chown=1:1 \
  --chmod=755 \
  a b \
  /c/
