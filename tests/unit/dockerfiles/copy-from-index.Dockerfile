FROM alpine AS one
RUN echo one > /one
FROM alpine
COPY --from=0 /one /one
COPY --from=nginx:latest /etc/nginx/nginx.conf /nginx.conf
