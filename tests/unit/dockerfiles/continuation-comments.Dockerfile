FROM debian
RUN apt-get update \
# comment in the middle
    && apt-get install -y \
      # indented comment
      curl \
      git
