FROM nginx
HEALTHCHECK --retries=5 CMD ["curl", "-f", "http://localhost/"]
