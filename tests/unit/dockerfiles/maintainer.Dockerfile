FROM alpine
MAINTAINER SvenDowideit@home.org.au
MAINTAINER  Name  With  Spaces  
