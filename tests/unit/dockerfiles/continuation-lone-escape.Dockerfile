FROM debian
\
RUN x
