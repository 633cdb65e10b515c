from alpine As Build
Run echo mixed
rUn echo more
copy a b
Env A=b
label k=v
workdir /x
cmd ["x"]
entrypoint y
FROM build AS final
