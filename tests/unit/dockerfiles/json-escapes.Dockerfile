FROM alpine
CMD ["echo", "a\"b", "tab\there", "\u00e9"]
COPY ["with space.txt", "/dst dir/"]
