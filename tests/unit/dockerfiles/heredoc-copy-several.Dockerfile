FROM alpine
COPY <<a.txt <<b.txt /dst/
A
a.txt
B
b.txt
