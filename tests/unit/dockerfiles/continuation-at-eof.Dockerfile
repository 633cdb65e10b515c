FROM debian
RUN echo a \