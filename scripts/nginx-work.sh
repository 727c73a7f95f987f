# Sourced by bench-capture.sh and bench-connections.sh: a scratch nginx set-up made from
# tests/captures/nginx.conf (one worker) that serves /index.html on 127.0.0.1:PORT.
#     work="$(nginx_work PORT [extra sed -e expressions...])"
nginx_work() {
    local port="$1" work
    shift
    work="$(mktemp -d)"
    chmod 755 "$work"
    mkdir -p "$work/www"
    sed -e "s#NGINX_DIR#$work#g" -e "s#NGINX_PORT#$port#g" -e "s#BACKEND_PORT#$((port + 1))#g" \
        "$@" tests/captures/nginx.conf > "$work/nginx.conf"
    printf '<html><body>hello l7tap</body></html>\n' > "$work/www/index.html"
    chmod -R 755 "$work"
    echo "$work"
}
