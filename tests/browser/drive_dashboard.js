// Drives the dashboard page in headless Chromium over the DevTools protocol (through
// --remote-debugging-pipe: no npm package needed) and prints what it found as one JSON
// line. Usage: node drive_dashboard.js URL SCREENSHOT.png NODE_NAME TOPIC
// It waits for the node NODE_NAME and the topic TOPIC to appear (with a stream drawn
// in the graph), replays the first dead letter with its button, waits for the page to
// say it was replayed, and saves a screenshot.
"use strict";
const { spawn } = require("child_process");
const fs = require("fs");
const os = require("os");
const path = require("path");

const [url, screenshot, nodeName, topic] = process.argv.slice(2);
const chromium = process.env.CHROMIUM || "chromium";
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "meshbus-chromium-"));
const browser = spawn(chromium, ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
  "--no-first-run", "--remote-debugging-pipe", `--user-data-dir=${profile}`, "--window-size=1400,1000", "about:blank"],
  { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"] });
let stderr = "";
browser.stderr.on("data", (d) => { stderr += d; });
const toBrowser = browser.stdio[3];
const fromBrowser = browser.stdio[4];

let nextId = 1;
const pending = new Map();
let buffer = Buffer.alloc(0);
fromBrowser.on("data", (chunk) => {
  buffer = Buffer.concat([buffer, chunk]);
  for (let end; (end = buffer.indexOf(0)) >= 0;) {
    const message = JSON.parse(buffer.subarray(0, end).toString("utf8"));
    buffer = buffer.subarray(end + 1);
    if (message.id && pending.has(message.id)) {
      const { resolve, reject } = pending.get(message.id);
      pending.delete(message.id);
      if (message.error) reject(new Error(JSON.stringify(message.error))); else resolve(message.result);
    }
  }
});

function send(method, params = {}, sessionId) {
  const id = nextId++;
  const message = { id, method, params };
  if (sessionId) message.sessionId = sessionId;
  toBrowser.write(JSON.stringify(message) + "\0");
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const { targetId } = await send("Target.createTarget", { url: "about:blank" });
  const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
  const page = (method, params) => send(method, params, sessionId);
  const evaluate = async (expression) => {
    const r = await page("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true });
    if (r.exceptionDetails) throw new Error(JSON.stringify(r.exceptionDetails));
    return r.result.value;
  };
  const waitFor = async (what, expression, ms = 30000) => {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      if (await evaluate(expression)) return true;
      await sleep(200);
    }
    throw new Error("timed out waiting for " + what);
  };
  await page("Page.enable", {});
  await page("Page.navigate", { url });
  const result = {};
  await waitFor("the node", `!!document.querySelector('#nodes tr[data-node=${JSON.stringify(nodeName)}]')`);
  await waitFor("the topic", `!!document.querySelector('#topics tr[data-topic=${JSON.stringify(topic)}]')`);
  await waitFor("a stream in the graph", "document.querySelectorAll('#graph line.edge').length > 0");
  result.nodes = await evaluate("[...document.querySelectorAll('#nodes tbody tr')].map((r) => r.dataset.node)");
  result.topics = await evaluate("[...document.querySelectorAll('#topics tbody tr')].map((r) => r.dataset.topic)");
  result.edges = await evaluate("document.querySelectorAll('#graph line.edge').length");
  result.graph_labels = await evaluate("[...document.querySelectorAll('#graph .edgelabel')].map((t) => t.textContent)");
  await waitFor("a dead letter", "!!document.querySelector('#dlq tr[data-letter] button.replay')");
  result.dead_letters = await evaluate("document.querySelectorAll('#dlq tr[data-letter]').length");
  await evaluate("document.querySelector('#dlq tr[data-letter] button.replay').click(), true");
  await waitFor("the replay", "(document.querySelector('#dlq tr[data-replayed]') || {dataset: {}}).dataset.replayed !== undefined");
  result.replayed = await evaluate("document.querySelector('#dlq tr[data-replayed]').dataset.replayed");
  result.summary = await evaluate("document.querySelector('#summary').textContent");
  const shot = await page("Page.captureScreenshot", { format: "png" });
  fs.writeFileSync(screenshot, Buffer.from(shot.data, "base64"));
  result.screenshot_bytes = fs.statSync(screenshot).size;
  console.log(JSON.stringify(result));
}

const timer = setTimeout(() => { console.log(JSON.stringify({ error: "timed out after 90 s" })); finish(1); }, 90000);
let exitCode = null;
// Chromium may still write to its profile until it is gone: remove it after the exit.
function cleanUp() {
  try { fs.rmSync(profile, { recursive: true, force: true }); } catch (e) { /* left in the temporary directory */ }
  process.exit(exitCode);
}
function finish(code) {
  clearTimeout(timer);
  exitCode = code;
  if (browser.exitCode !== null || browser.signalCode !== null) return cleanUp();
  browser.kill("SIGKILL");
  setTimeout(cleanUp, 5000);  // should the exit event not come
}
browser.on("exit", (code) => {
  if (exitCode !== null) return cleanUp();
  if (pending.size > 0) { console.log(JSON.stringify({ error: "chromium exited (" + code + "): " + stderr.slice(-2000) })); finish(1); }
});
main().then(() => finish(0), (e) => { console.log(JSON.stringify({ error: String(e.message || e), chromium: stderr.slice(-2000) })); finish(1); });
