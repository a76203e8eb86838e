#!/usr/bin/env node
// Launcher for `npx bitrix24-task-results-mcp`: runs the native server binary from the
// platform package npm installed (one of the optionalDependencies, picked by os/cpu).
// stdout is JSON-RPC in stdio mode, so this file never writes to it: stdio is inherited
// untouched, arguments and signals are passed on, the child's exit code is ours.
"use strict";

const { spawn } = require("node:child_process");
const path = require("node:path");

const PLATFORMS = {
  "darwin-arm64": "@bitrix24-task-results-mcp/darwin-arm64",
  "darwin-x64": "@bitrix24-task-results-mcp/darwin-x64",
  "linux-arm64": "@bitrix24-task-results-mcp/linux-arm64",
  "linux-x64": "@bitrix24-task-results-mcp/linux-x64",
  "win32-x64": "@bitrix24-task-results-mcp/win32-x64",
};

function binaryPath() {
  const key = `${process.platform}-${process.arch}`;
  const pkg = PLATFORMS[key];
  if (!pkg) {
    fail(
      `no prebuilt binary for ${key} (there are: ${Object.keys(PLATFORMS).join(", ")}). ` +
        "Build it from source instead: cargo install --locked --path . in a checkout (see the README)",
    );
  }
  const exe = process.platform === "win32" ? "bitrix24-task-results-mcp.exe" : "bitrix24-task-results-mcp";
  try {
    return path.join(path.dirname(require.resolve(`${pkg}/package.json`)), "bin", exe);
  } catch {
    fail(
      `the package ${pkg}, which carries the binary for ${key}, is not installed. ` +
        "It is an optional dependency: reinstall without --no-optional / --omit=optional, " +
        "or build it from source: cargo install --locked --path . in a checkout",
    );
  }
}

function fail(message) {
  process.stderr.write(`bitrix24-task-results-mcp: ${message}\n`);
  process.exit(1);
}

const child = spawn(binaryPath(), process.argv.slice(2), { stdio: "inherit", windowsHide: true });

// A signal sent to this launcher (a client stopping the server, Ctrl-C) goes to the
// server, which shuts down on its own terms; the launcher exits when the server does.
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  });
}

child.on("error", (err) => fail(`could not start the binary: ${err.message}`));
child.on("exit", (code, signal) => {
  if (signal) {
    // Die of the same signal, so the parent sees what the server saw.
    for (const s of ["SIGINT", "SIGTERM", "SIGHUP"]) process.removeAllListeners(s);
    process.kill(process.pid, signal);
    return;
  }
  process.exit(code ?? 1);
});
