FROM alpine
ENV A="x\\y" B='x\y' C=x\\y D="it's" E='say "hi"'
