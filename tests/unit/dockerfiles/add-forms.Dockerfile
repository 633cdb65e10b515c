FROM alpine
ADD hom* /mydir/
ADD hom?.txt /mydir/
ADD ["with space", "/dst/"]
ADD git@github.com:moby/buildkit.git /bk
