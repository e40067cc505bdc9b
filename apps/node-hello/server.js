// hello: the web server every Node.js cell builds and probes (standard library only).
"use strict";
const http = require("node:http");

const BODY = "hello from basebench\n";

http
  .createServer((request, response) => {
    response.writeHead(200, {
      "Content-Type": "text/plain; charset=utf-8",
      "Content-Length": Buffer.byteLength(BODY),
    });
    response.end(BODY);
  })
  .listen(8080);
