#!/bin/sh
# Print the rendered page (default), or serve it: show --serve
set -e
if [ "$1" = "--serve" ]; then
    exec httpd -f -v -p 8080 -h /srv/www
fi
cat /srv/www/page.html
echo "--"
cat /srv/www/build-info.txt
echo "running as $(id -un) in $(pwd)"
