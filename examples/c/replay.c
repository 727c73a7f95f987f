/* Loads a pcap and optional Wasm plugins through l7tap's C ABI, polls the records and prints
 * one line each (protocol, method/command, resource, status code, plugins, JSON form).
 *     cc -o replay examples/c/replay.c $(pkg-config --cflags --libs target/debug/l7tap.pc)
 *     ./replay capture.pcap [plugin.wasm ...]
 * Exit status: 0 on success, 1 when an l7tap call fails (its message is printed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "l7tap.h"

static int check(L7tapStatus s, const char *what) {
    if (s != L7TAP_OK) {
        fprintf(stderr, "%s: %s: %s\n", what, l7tap_error_message(s), l7tap_last_error());
        return 1;
    }
    return 0;
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void print_bytes(L7tapBytes b) { fwrite(b.ptr ? (const char *)b.ptr : "", 1, b.len, stdout); }

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s capture.pcap [plugin.wasm ...]\n", argv[0]);
        return 2;
    }
    if (l7tap_abi_version() != L7TAP_ABI_VERSION) {
        fprintf(stderr, "ABI mismatch: library %u, header %u\n", l7tap_abi_version(), L7TAP_ABI_VERSION);
        return 1;
    }
    L7tapEngine engine = 0;
    if (check(l7tap_engine_new("{\"workers\": 1}", NULL, NULL, &engine), "engine_new")) return 1;
    for (int i = 2; i < argc; i++) {
        size_t len = 0;
        unsigned char *wasm = read_file(argv[i], &len);
        if (!wasm) { fprintf(stderr, "%s: cannot read\n", argv[i]); l7tap_engine_free(engine); return 1; }
        /* the plugin's name: its file name without directory and extension */
        const char *base = strrchr(argv[i], '/');
        base = base ? base + 1 : argv[i];
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)strcspn(base, "."), base);
        int bad = check(l7tap_engine_load_plugin(engine, name, wasm, len), name);
        free(wasm);
        if (bad) { l7tap_engine_free(engine); return 1; }
    }
    if (check(l7tap_engine_start_pcap(engine, argv[1]), "start_pcap")) { l7tap_engine_free(engine); return 1; }
    L7tapStatus waited = l7tap_engine_wait(engine);
    L7tapRecord batch[16];
    uint64_t ids[16];
    size_t n = 0, total = 0;
    do {
        if (check(l7tap_engine_poll(engine, batch, 16, 100, &n), "poll")) break;
        for (size_t i = 0; i < n; i++) {
            L7tapRecord *r = &batch[i];
            print_bytes(r->protocol); putchar(' ');
            print_bytes(r->request_type); putchar(' ');
            print_bytes(r->request_resource);
            if (r->has_response_code) printf(" %d", r->response_code); else printf(" -");
            if (r->plugins.len) { printf(" plugins="); print_bytes(r->plugins); }
            for (size_t a = 0; a < r->attributes_len; a++) {
                putchar(' '); print_bytes(r->attributes[a].key); putchar('='); print_bytes(r->attributes[a].value);
            }
            L7tapBytes json;
            if (!check(l7tap_record_to_json(engine, r->id, &json), "to_json")) { printf(" json="); print_bytes(json); }
            putchar('\n');
            ids[i] = r->id;
        }
        if (n && check(l7tap_records_release(engine, ids, n), "release")) break;
        total += n;
    } while (n > 0);
    L7tapStat stats[128];
    size_t nstats = 0;
    if (!check(l7tap_engine_stats(engine, stats, 128, &nstats), "stats")) {
        for (size_t i = 0; i < nstats && i < 128; i++)
            if (!strcmp(stats[i].name, "records")) fprintf(stderr, "records counted: %llu\n", (unsigned long long)stats[i].value);
    }
    /* Mistakes are answered, not crashed on. */
    L7tapStatus bad = l7tap_engine_poll(engine + 1000, batch, 16, 0, &n);
    fprintf(stderr, "bad handle: %s\n", l7tap_error_message(bad));
    check(l7tap_engine_free(engine), "free");
    fprintf(stderr, "printed %zu records\n", total);
    return waited == L7TAP_OK ? 0 : (check(waited, "wait"), 1);
}
