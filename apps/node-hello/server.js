// hello: the web server every Node.js cell builds and probes: the standard library, plus
// one vendored dependency (node_modules/ms, a labelled stand-in) for the npm advisories.
"use strict";
const http = require("node:http");
const ms = require("ms");

const BODY = "hello from basebench\n";

http
  .createServer((request, response) => {
    response.writeHead(200, {
      "Content-Type": "text/plain; charset=utf-8",
      "Content-Length": Buffer.byteLength(BODY),
    });
    response.end(BODY);
  })
  .listen(8080, () => {
    console.log(`listening on :8080 after ${ms(Math.round(process.uptime() * 1000))}`);
  });
