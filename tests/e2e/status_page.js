// End to end: the status page in a real browser (Debian's Chromium, headless, driven by
// playwright-core) on the demo ClusterSet. The topology shows the demo's three members in
// their two networks with their east-west gateways; the service page of demo/reviews shows
// its port conflict; a member page lists what Bowline writes; a Service added to a demo
// manifest appears on the page without a reload. Screenshots go to the artifacts directory.
//
// Usage: node status_page.js <bowline binary> <artifacts dir>
"use strict";

const { chromium } = require("playwright-core");
const { spawn } = require("child_process");
const fs = require("fs");
const os = require("os");
const path = require("path");
const readline = require("readline");

const [bowline, artifacts] = process.argv.slice(2);
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";

function startDemo(dir) {
  const proc = spawn(bowline, ["demo", "--dir", dir, "--admin", "127.0.0.1:0", "--xds", "127.0.0.1:0",
    "--xds-tls", "127.0.0.1:0", "--dns", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "ignore"] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the demo printed no admin address")), 60000);
    readline.createInterface({ input: proc.stdout }).on("line", (line) => {
      const found = line.trim().match(/^admin: (http:\/\/[^/]+)\/$/);
      if (found) { clearTimeout(timer); resolve({ proc, admin: found[1] }); }
    });
  });
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function main() {
  fs.mkdirSync(artifacts, { recursive: true });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bowline-status-"));
  const { proc, admin } = await startDemo(dir);
  const browser = await chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox"] });
  const page = await browser.newPage({ viewport: { width: 1300, height: 1000 } });
  const shot = (name) => page.screenshot({ path: path.join(artifacts, `status-${name}.png`), fullPage: true });
  try {
    await page.goto(`${admin}/`);
    await page.waitForSelector('svg g.network[data-network="net-east"] g.member[data-member="east"]');
    const layout = await page.$$eval("svg g.network", (networks) => networks.map((n) => ({
      network: n.dataset.network,
      members: [...n.querySelectorAll("g.member")].map((m) => [m.dataset.member, m.dataset.state]),
      gateways: [...n.querySelectorAll("g.gateway")].map((g) => g.dataset.gateway),
    })));
    console.log("status page: topology", JSON.stringify(layout));
    const byNetwork = Object.fromEntries(layout.map((n) => [n.network, n]));
    check(layout.length === 2, `two networks: ${JSON.stringify(layout)}`);
    check(JSON.stringify(byNetwork["net-east"].members) === JSON.stringify([["east", "admitted"], ["central", "admitted"]]),
      `east and central in net-east: ${JSON.stringify(byNetwork["net-east"])}`);
    check(JSON.stringify(byNetwork["net-west"].members) === JSON.stringify([["west", "admitted"]]),
      `west in net-west: ${JSON.stringify(byNetwork["net-west"])}`);
    check(byNetwork["net-east"].gateways.includes("192.0.2.10:15443"), "east's gateway on net-east");
    check(byNetwork["net-west"].gateways.length === 2, "west's dual-stack gateway: two addresses");
    const reviews = await page.$$eval('tr[data-service="demo/reviews"] td.cell', (cells) =>
      cells.map((c) => [c.dataset.member, c.dataset.state]));
    check(JSON.stringify(reviews) === JSON.stringify([["east", "conflict"], ["west", "conflict"], ["central", "imported"]]),
      `the matrix row of demo/reviews: ${JSON.stringify(reviews)}`);
    await shot("topology");

    // The service page: the port conflict, with who won.
    await page.click('a[href="#/service/demo/reviews"]');
    await page.waitForSelector(".conflicts");
    const conflicts = await page.textContent(".conflicts");
    check(conflicts.includes("PortConflict") && conflicts.includes("east's ServiceExport, the oldest"),
      `the port conflict on the service page: ${conflicts}`);
    await shot("service-reviews");

    // A member page: what Bowline writes into it.
    await page.goto(`${admin}/#/member/west`);
    await page.waitForSelector("text=What Bowline writes into it");
    check((await page.textContent("main")).includes("ServiceImport"), "west's page lists its ServiceImports");
    await shot("member-west");

    // A change appears without a reload.
    await page.goto(`${admin}/#/`);
    await page.waitForSelector('tr[data-service="demo/echo"]');
    await page.evaluate(() => { window.notReloaded = true; });
    fs.writeFileSync(path.join(dir, "members", "east", "extra.yaml"),
      "apiVersion: v1\nkind: Service\nmetadata: {name: extra, namespace: demo}\n" +
      "spec:\n  clusterIP: 10.96.9.9\n  ports: [{name: http, port: 80, protocol: TCP}]\n");
    await page.waitForSelector('tr[data-service="demo/extra"] td[data-member="east"][data-state="exported"]', { timeout: 20000 });
    check(await page.evaluate(() => window.notReloaded === true), "the page was not reloaded");
    await shot("after-edit");
    console.log("status page: topology, service conflict, member writes and a live edit check out");
  } catch (e) {
    await shot("failure").catch(() => {});
    throw e;
  } finally {
    await browser.close();
    proc.kill();
  }
}

main().catch((e) => { console.error(`status page: FAILED: ${e.stack || e}`); process.exit(1); });
