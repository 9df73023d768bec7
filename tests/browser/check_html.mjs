// Opens the page `dualpub verify --html` wrote in headless Chromium (Debian's, driven by
// playwright-core; no browser download) and checks it as a reader would get it: no console
// error, no page error, no request for anything but the file itself; the verdict shown; every
// chart drawn (a visible mark) or saying "No data", and no two of a chart's texts overlapping;
// with --findings (the same run's `dualpub verify --json`), the verdict, the rows and which
// charts have data agree with the findings. Saves a full-page screenshot.
//
// usage: node tests/browser/check_html.mjs REPORT.html SCREENSHOT.png [--findings FINDINGS.json]
// env:   CHROMIUM (default /usr/bin/chromium), PLAYWRIGHT_MODULES (the node_modules holding
//        playwright-core; default target/tools/browser/node_modules)
import { createRequire } from 'node:module';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const CHART_IDS = ['chart-deliveries', 'chart-delay', 'chart-causes', 'chart-devices', 'chart-fallbacks'];
const VERDICTS = ['PASS', 'FAIL', 'INSUFFICIENT'];
const MISSING_LISTED = 100;

function parseArgs(argv) {
    const positional = [];
    let findings = null;
    for (let i = 0; i < argv.length; i++) {
        if (argv[i] === '--findings') findings = argv[++i];
        else positional.push(argv[i]);
    }
    if (positional.length !== 2 || (findings === undefined)) {
        console.error('usage: node check_html.mjs REPORT.html SCREENSHOT.png [--findings FINDINGS.json]');
        process.exit(2);
    }
    return { report: path.resolve(positional[0]), screenshot: path.resolve(positional[1]), findings };
}

function loadPlaywright() {
    const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
    const modules = process.env.PLAYWRIGHT_MODULES || path.join(repo, 'target/tools/browser/node_modules');
    return createRequire(path.join(modules, 'resolve-from-here.js'))('playwright-core');
}

/** What each chart shows: its marks with a visible box, its no-data text, overlapping texts. */
function inspectCharts(ids) {
    const overlap = (a, b) => a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
    return ids.map((id) => {
        const svg = document.getElementById(id);
        if (!svg || svg.tagName.toLowerCase() !== 'svg') return { id, found: false };
        const marks = [...svg.querySelectorAll('rect.mark, path.mark, polyline.mark, circle.mark')].filter((m) => {
            const r = m.getBoundingClientRect();
            return r.width > 0 && r.height > 0 && getComputedStyle(m).visibility !== 'hidden';
        });
        const noData = [...svg.querySelectorAll('text.no-data')].map((t) => t.textContent);
        const texts = [...svg.querySelectorAll('text')].map((t) => ({ text: t.textContent, box: t.getBoundingClientRect() }));
        const overlaps = [];
        for (let i = 0; i < texts.length; i++)
            for (let j = i + 1; j < texts.length; j++)
                if (overlap(texts[i].box, texts[j].box)) overlaps.push(`"${texts[i].text}" / "${texts[j].text}"`);
        const box = svg.getBoundingClientRect();
        return {
            id, found: true, marks: marks.length, noData, overlaps,
            title: svg.querySelector('title')?.textContent ?? '', label: svg.getAttribute('aria-label') ?? '',
            height: box.height, width: box.width,
        };
    });
}

/** Failures of one chart; `expectData` (from the findings) is true, false or null (unknown). */
function chartFailures(c, expectData) {
    if (!c.found) return [`${c.id}: no <svg id="${c.id}">`];
    const out = [];
    if (!c.title || !c.label) out.push(`${c.id}: no <title> or aria-label`);
    if (c.width < 300 || c.height < 60) out.push(`${c.id}: drawn ${c.width}×${c.height} px`);
    const noData = c.noData.some((t) => t.startsWith('No data'));
    if (c.marks === 0 && !noData) out.push(`${c.id}: neither a drawn mark nor the no-data text`);
    if (c.marks > 0 && noData) out.push(`${c.id}: marks and the no-data text at once`);
    if (expectData === true && c.marks === 0) out.push(`${c.id}: the findings have data, the chart shows none`);
    if (expectData === false && c.marks > 0) out.push(`${c.id}: the findings have no data, the chart draws ${c.marks} marks`);
    if (c.overlaps.length) out.push(`${c.id}: overlapping texts: ${c.overlaps.slice(0, 5).join(', ')}`);
    return out;
}

/** Which charts must have data, from the findings (`dualpub verify --json`). */
function expectations(f) {
    const sum = (xs) => xs.reduce((a, b) => a + b, 0);
    const histogram = Object.values(f.delayHistogram ?? {}).flat().map(([, n]) => n);
    return {
        'chart-deliveries': f.timeline.length > 0,
        'chart-delay': sum(histogram) > 0,
        'chart-causes': f.missing.length > 0,
        'chart-devices': f.worstDevices.length > 0,
        'chart-fallbacks': sum(f.timeline.map((m) => m.fallbacks)) > 0,
    };
}

async function main() {
    const args = parseArgs(process.argv.slice(2));
    const findings = args.findings ? JSON.parse(readFileSync(args.findings, 'utf8')) : null;
    const { chromium } = loadPlaywright();
    const browser = await chromium.launch({
        executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
        headless: true,
        timeout: 60_000,
        args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const failures = [];
    try {
        const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
        const url = pathToFileURL(args.report).href;
        page.on('console', (m) => { if (m.type() === 'error') failures.push(`console error: ${m.text()}`); });
        page.on('pageerror', (e) => failures.push(`page error: ${e.message}`));
        page.on('request', (r) => { if (r.url() !== url) failures.push(`request for ${r.url()}`); });
        const response = await page.goto(url, { waitUntil: 'load', timeout: 30_000 });
        if (!response || !response.ok()) failures.push(`opening ${url}: ${response ? response.status() : 'no response'}`);

        const verdict = (await page.locator('#verdict').textContent({ timeout: 5_000 }))?.trim() ?? '';
        if (!VERDICTS.includes(verdict)) failures.push(`verdict "${verdict}" is none of ${VERDICTS.join(', ')}`);
        const charts = await page.evaluate(inspectCharts, CHART_IDS);
        const expected = findings ? expectations(findings) : {};
        for (const c of charts) failures.push(...chartFailures(c, expected[c.id] ?? null));
        if (findings) {
            if (verdict !== findings.verdict.toUpperCase()) failures.push(`verdict "${verdict}", findings say ${findings.verdict}`);
            const steps = await page.locator('#steps tbody tr').count();
            if (steps !== findings.steps.length) failures.push(`${steps} step rows, findings have ${findings.steps.length} steps`);
            const missing = await page.locator('#missing tbody tr').count();
            if (missing !== Math.min(MISSING_LISTED, findings.missing.length)) failures.push(`${missing} missing rows, findings have ${findings.missing.length}`);
            const mismatched = await page.locator('#mismatched tbody tr').count();
            if (mismatched !== Math.min(MISSING_LISTED, findings.mismatched.length)) failures.push(`${mismatched} mismatch rows, findings have ${findings.mismatched.length}`);
            for (const m of findings.mismatched.slice(0, MISSING_LISTED)) {
                const row = page.locator('#mismatched tbody tr', { hasText: m.eventId });
                if (await row.count() !== 1) failures.push(`mismatch ${m.eventId} is not named on the page`);
                else if (m.fields && m.fields.length && !(await row.textContent()).includes(m.fields.join(', '))) failures.push(`mismatch ${m.eventId}: fields ${m.fields} not shown`);
            }
            const unbounded = await page.locator('#unbounded tbody tr').count();
            if (unbounded !== Math.min(MISSING_LISTED, findings.unbounded.length)) failures.push(`${unbounded} unbounded rows, findings have ${findings.unbounded.length}`);
        }
        await page.screenshot({ path: args.screenshot, fullPage: true });
        console.log(`    verdict ${verdict}`);
        for (const c of charts) console.log(`    ${c.id}: ${!c.found ? 'not on the page' : c.marks ? `${c.marks} marks drawn` : c.noData.join(' ') || 'nothing drawn'}`);
        console.log(`    screenshot: ${args.screenshot} (${Math.round(statSync(args.screenshot).size / 1024)} KiB)`);
    } finally {
        await browser.close();
    }
    if (failures.length) {
        for (const f of failures) console.error(`FAIL ${f}`);
        process.exit(1);
    }
    console.log('browser check of the HTML report: ok');
}

main().catch((e) => {
    console.error(e);
    process.exit(1);
});
