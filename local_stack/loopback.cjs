// Preloaded into kinesis-mock (node --require): it listens on 0.0.0.0 with no option to change
// that, so every server it opens on a wildcard address listens on BIND_HOST (127.0.0.1) instead.
"use strict";
const net = require("net");
const host = process.env.BIND_HOST || "127.0.0.1";
const wildcard = new Set([undefined, null, "", "0.0.0.0", "::"]);
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (args.length && typeof args[0] === "object" && args[0] !== null && "port" in args[0]) {
    if (wildcard.has(args[0].host)) args[0] = { ...args[0], host };
  } else if (typeof args[0] === "number" || /^\d+$/.test(String(args[0]))) {
    if (typeof args[1] !== "string" || wildcard.has(args[1])) {
      const rest = typeof args[1] === "string" || args[1] === undefined ? args.slice(2) : args.slice(1);
      args = [args[0], host, ...rest];
    }
  }
  return listen.apply(this, args);
};
