#!/usr/bin/python3
"""GETs over one HTTPS keep-alive connection with libcurl's NSS build (Debian's
libcurl3-nss: TLS by Mozilla's NSS, whose I/O goes through NSPR's PR_Send/PR_Recv), loaded
with ctypes; the certificate is not verified (the tests' server is self-signed). Prints
"status body_length" per request, from libcurl's own report.

    nss_https_get.py PORT PATH...

With WAIT_FOR_GO=1 in the environment it waits for a line on stdin first (NSS is loaded and
initialised by then). NSS_BUFFER=N sets libcurl's receive buffer (CURLOPT_BUFFERSIZE): with a
buffer smaller than a TLS record, NSS hands most of each record over from its own buffer,
without a socket read inside the call.
"""
import ctypes
import os
import sys

CURLOPT_URL = 10002
CURLOPT_WRITEFUNCTION = 20011
CURLOPT_SSL_VERIFYPEER = 64
CURLOPT_SSL_VERIFYHOST = 81
CURLOPT_BUFFERSIZE = 98
CURLINFO_RESPONSE_CODE = 0x200002
CURLINFO_SIZE_DOWNLOAD_T = 0x600008
CURLINFO_NUM_CONNECTS = 0x20001A

port, paths = int(sys.argv[1]), sys.argv[2:]
curl = ctypes.CDLL("libcurl-nss.so.4")
curl.curl_version.restype = ctypes.c_char_p
assert b"NSS" in curl.curl_version(), curl.curl_version()
curl.curl_easy_init.restype = ctypes.c_void_p
curl.curl_easy_setopt.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
curl.curl_easy_perform.argtypes = [ctypes.c_void_p]
curl.curl_easy_getinfo.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
curl.curl_easy_cleanup.argtypes = [ctypes.c_void_p]
curl.curl_global_init(3)
h = curl.curl_easy_init()
WRITE = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t,
                         ctypes.c_void_p)
discard = WRITE(lambda ptr, size, n, _: size * n)
curl.curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, ctypes.cast(discard, ctypes.c_void_p))
curl.curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0)
curl.curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0)
if os.environ.get("NSS_BUFFER"):
    curl.curl_easy_setopt(h, CURLOPT_BUFFERSIZE, int(os.environ["NSS_BUFFER"]))
if os.environ.get("WAIT_FOR_GO") == "1":
    sys.stdin.readline()
connects = 0
for path in paths:
    url = f"https://127.0.0.1:{port}{path}".encode()
    curl.curl_easy_setopt(h, CURLOPT_URL, ctypes.c_char_p(url))
    rc = curl.curl_easy_perform(h)
    assert rc == 0, f"curl_easy_perform: {rc}"
    code, size, n = ctypes.c_long(), ctypes.c_int64(), ctypes.c_long()
    curl.curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, ctypes.byref(code))
    curl.curl_easy_getinfo(h, CURLINFO_SIZE_DOWNLOAD_T, ctypes.byref(size))
    curl.curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, ctypes.byref(n))
    connects += n.value
    print(code.value, size.value)
curl.curl_easy_cleanup(h)
curl.curl_global_cleanup()
assert connects == 1, f"one keep-alive connection, not {connects}"
