FROM alpine
ENV abc=hello
ENV abc=bye def=$abc
ENV ghi=$abc
ENV ONE=${abc:+set} TWO=${nope:-unset} THREE=${abc#h} FOUR=${abc%%e*}
COPY ${SRC:-.} $DEST
WORKDIR /path/${sub}/\$literal
