/*
 * user_agent_c: a plugin written in C (clang-14 + wasi-libc) to show that the ABI is
 * language-neutral. On every HTTP request it reads the request info (path, host, user agent,
 * referer) and adds the attributes `user_agent` and (when present) `referer` to the record,
 * answering with a legacy binary record (wasm-abi.md section 7.2, current layout).
 */
#include <stdint.h>
#include <string.h>

#define IMPORT(name) __attribute__((import_module("deepflow"), import_name(name)))

IMPORT("vm_read_ctx_base") int32_t vm_read_ctx_base(uint8_t *buf, int32_t len);
IMPORT("vm_read_http_req_info") int32_t vm_read_http_req_info(uint8_t *buf, int32_t len);
IMPORT("host_read_l7_protocol_info") int32_t host_read_l7_protocol_info(const uint8_t *buf, int32_t len);
IMPORT("wasm_log") void wasm_log(const char *msg, int32_t len, int32_t level);

/* HTTP_REQ is bit 127: the first byte's top bit. */
static uint8_t hook_bitmap[16] = {0x80};

static uint8_t base[1024];
static uint8_t info[8192];
static uint8_t out[8192];

int32_t get_hook_bitmap(void) { return (int32_t)(uintptr_t)hook_bitmap; }
int32_t check_payload(void) { return 0; }
int32_t parse_payload(void) { return 0; }
int32_t on_http_resp(void) { return 0; }

static int read_str16(const uint8_t *b, int32_t n, int32_t *at, const uint8_t **s, uint16_t *len) {
    if (*at + 2 > n) return 0;
    *len = (uint16_t)(b[*at] << 8 | b[*at + 1]);
    if (*at + 2 + *len > n) return 0;
    *s = b + *at + 2;
    *at += 2 + *len;
    return 1;
}

static uint8_t *put_u32(uint8_t *p, uint32_t v) {
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
    return p + 4;
}

static uint8_t *put_str16(uint8_t *p, const uint8_t *s, uint16_t len) {
    p[0] = len >> 8; p[1] = len & 0xff;
    memcpy(p + 2, s, len);
    return p + 2 + len;
}

int32_t on_http_req(void) {
    if (vm_read_ctx_base(base, sizeof base) <= 0) return 0;
    int32_t n = vm_read_http_req_info(info, sizeof info);
    if (n <= 0) return 0;
    const uint8_t *path, *host, *ua, *ref;
    uint16_t path_len, host_len, ua_len, ref_len;
    int32_t at = 0;
    if (!read_str16(info, n, &at, &path, &path_len) || !read_str16(info, n, &at, &host, &host_len) ||
        !read_str16(info, n, &at, &ua, &ua_len) || !read_str16(info, n, &at, &ref, &ref_len))
        return 0;
    if (ua_len == 0) return 0; /* nothing to add: let the next plugin look */

    uint8_t *p = out + 2; /* room for the record length */
    p = put_u32(p, 0);     /* req_len: absent */
    p = put_u32(p, 0);     /* resp_len: absent */
    *p++ = 0;              /* no request id */
    p = put_str16(p, (const uint8_t *)"", 0); /* req_type  */
    p = put_str16(p, (const uint8_t *)"", 0); /* endpoint  */
    p = put_str16(p, (const uint8_t *)"", 0); /* domain    */
    p = put_str16(p, (const uint8_t *)"", 0); /* resource  */
    p = put_str16(p, (const uint8_t *)"", 0); /* protocol_str */
    *p++ = 0;              /* merge flags */
    *p++ = 0;              /* no trace */
    *p++ = 1;              /* key/value pairs follow */
    p = put_str16(p, (const uint8_t *)"user_agent", 10);
    p = put_str16(p, ua, ua_len);
    if (ref_len > 0) {
        p = put_str16(p, (const uint8_t *)"referer", 7);
        p = put_str16(p, ref, ref_len);
    }
    *p++ = 0;              /* biz_type */
    uint16_t rec_len = (uint16_t)(p - out - 2);
    out[0] = rec_len >> 8;
    out[1] = rec_len & 0xff;
    if (!host_read_l7_protocol_info(out, (int32_t)(p - out))) {
        const char *msg = "host rejected the result";
        wasm_log(msg, (int32_t)strlen(msg), 2);
    }
    return 1;
}

int main(void) { return 0; }
