// HTTPS GETs over one keep-alive connection with Node.js's https module (OpenSSL through
// Node's own BIO: its SSL_read/SSL_write never touch the socket; Node's own builds link
// OpenSSL in, Debian's use the system libssl). Waits for a line on stdin first (a capture
// started meanwhile has looked at the program by then). Certificates are not verified (the
// tests' server is self-signed). Prints "status body_length" per request.
//     node node_https_get.js PORT PATH...
const https = require('https');
const readline = require('readline');
const [port, ...paths] = process.argv.slice(2);
const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
function get(path) {
  return new Promise((resolve, reject) => {
    https
      .get({ host: '127.0.0.1', port: Number(port), path, agent, rejectUnauthorized: false }, (res) => {
        let n = 0;
        res.on('data', (d) => (n += d.length));
        res.on('end', () => {
          console.log(res.statusCode, n);
          resolve();
        });
      })
      .on('error', reject);
  });
}
const rl = readline.createInterface({ input: process.stdin });
rl.once('line', async () => {
  rl.close();
  for (const p of paths) await get(p);
  agent.destroy();
});
