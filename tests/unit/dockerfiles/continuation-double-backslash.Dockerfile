FROM debian
RUN echo \\
RUN echo done
