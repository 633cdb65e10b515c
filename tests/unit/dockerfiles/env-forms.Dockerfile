FROM alpine
ENV MY_NAME="John Doe"
ENV MY_DOG=Rex\ The\ Dog
ENV MY_CAT=fluffy
ENV A=1 B=2 C="three four" D='five six'
ENV OLD legacy form with spaces
ENV EMPTY=
ENV Q="a \"quoted\" word"
ENV X=$Y Z=${Y:-default}
