// The dashboard's one stylesheet, served at STYLE_PATH. Mobile first: tables turn into cards below 720 px.

export const STYLE_VERSION = "4";
export const STYLE_PATH = `/dashboard/style.css?v=${STYLE_VERSION}`;

export const DASHBOARD_CSS = `
:root{--fg:#1b1f24;--muted:#5b6470;--line:#d9dee4;--bg:#f6f7f9;--card:#fff;--accent:#1f5fbf;
--ok:#1a7f37;--warn:#9a6700;--bad:#c2261d;--idle:#6e7781;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--fg)}
a{color:var(--accent)}code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em;overflow-wrap:anywhere}
header.top{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem 1rem;padding:.6rem 1rem;background:#14202e;color:#fff}
header.top a{color:#fff;text-decoration:none}header.top .brand{font-weight:700;margin-right:.5rem}
header.top nav{display:flex;gap:.9rem;flex-wrap:wrap}header.top nav a[aria-current=page]{text-decoration:underline}
header.top .who{margin-left:auto;color:#c9d1d9;font-size:.85rem;overflow-wrap:anywhere}
header.top form{margin:0}header.top button{background:transparent;color:#fff;border:1px solid #6e7781}
main{max-width:1100px;margin:0 auto;padding:1rem}
h1{font-size:1.35rem;margin:.2rem 0 1rem;overflow-wrap:anywhere}h2{font-size:1.1rem;margin:1.6rem 0 .6rem}
section.card,.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:1rem;margin:0 0 1rem;overflow-x:auto}
table{width:100%;border-collapse:collapse;background:var(--card)}
th,td{text-align:left;padding:.5rem .6rem;border-bottom:1px solid var(--line);vertical-align:top;overflow-wrap:anywhere}
.nowrap,time[data-relative]{white-space:nowrap}.kv{display:inline-block;margin-right:.8rem}.kv .k{color:var(--muted)}
th{font-size:.8rem;color:var(--muted);font-weight:600;text-transform:uppercase;letter-spacing:.03em;overflow-wrap:normal;word-break:keep-all;hyphens:none}
td .sub{color:var(--muted);font-size:.85rem;overflow-wrap:anywhere}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:999px;font-size:.8rem;font-weight:600;background:#eaeef2;color:var(--idle);white-space:nowrap}
.s-completed,.s-succeeded,.s-enabled,.s-fired,.s-triggered{background:#dafbe1;color:var(--ok)}
.s-running,.s-queued,.s-submitting,.s-pending,.s-cancelling,.s-action_required{background:#ddf4ff;color:#0969da}
.s-failed,.s-rejected,.s-expired,.s-dead{background:#ffebe9;color:var(--bad)}
.s-cancelled,.s-paused,.s-skipped_overlap,.s-skipped_missed,.s-skipped_budget{background:#fff8c5;color:var(--warn)}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;margin:0}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0;overflow-wrap:anywhere}
button,.button{font:inherit;padding:.35rem .8rem;border-radius:6px;border:1px solid var(--line);background:#fff;color:var(--fg);cursor:pointer;text-decoration:none;display:inline-block}
button.primary{background:var(--accent);border-color:var(--accent);color:#fff}button.danger{color:var(--bad)}
form.inline{display:inline}.actions{display:flex;gap:.4rem;flex-wrap:wrap}ul.counts{list-style:none;margin:0;padding:0}ul.counts li{white-space:nowrap}
.filters{display:flex;gap:.5rem;align-items:end;flex-wrap:wrap;margin-bottom:1rem}
select,input[type=text],input[type=password]{font:inherit;padding:.35rem .5rem;border:1px solid var(--line);border-radius:6px;background:#fff;max-width:100%}
.pager{display:flex;gap:1rem;margin:1rem 0}
.notice{background:#ddf4ff;border:1px solid #54aeff;padding:.6rem .8rem;border-radius:6px;margin-bottom:1rem}
.error{background:#ffebe9;border:1px solid #ff8182;padding:.6rem .8rem;border-radius:6px;margin-bottom:1rem}
.empty{color:var(--muted);font-style:italic}
progress{width:100%;height:1.1rem;accent-color:var(--accent)}
.progress-text{color:var(--muted);margin:.3rem 0}
ol.messages{list-style:none;padding:0;margin:.5rem 0 0;max-height:16rem;overflow:auto}
ol.messages li{padding:.25rem 0;border-top:1px dashed var(--line)}ol.messages .kind{color:var(--muted);font-size:.8rem;margin-right:.4rem}
.text-output{white-space:pre-wrap;overflow-wrap:anywhere}
.tree,.tree ul{list-style:none;margin:0;padding-left:1rem;border-left:1px solid var(--line)}
.tree{padding-left:.2rem;border:0}.tree li{margin:.15rem 0;overflow-wrap:anywhere}
.tree .k{color:#8250df;font-weight:600}.tree .str{color:#0a3069;white-space:pre-wrap}.tree .num{color:#0550ae}
.tree .bool,.tree .null{color:#953800}.tree summary{cursor:pointer;color:var(--muted)}
.basis{border-top:1px solid var(--line);padding:.6rem 0}.basis:first-child{border-top:0}
.basis h3{font-size:1rem;margin:0 0 .3rem}.basis blockquote{margin:.2rem 0 .2rem 1rem;color:var(--muted);font-size:.9rem}
.basis ul{padding-left:1.2rem;margin:.3rem 0}.citations .domain{white-space:nowrap}
.signin{max-width:28rem;margin:3rem auto}.signin label{display:block;margin-bottom:.4rem;font-weight:600}
.signin input{width:100%;margin-bottom:.8rem}
.columns{display:grid;grid-template-columns:repeat(auto-fit,minmax(20rem,1fr));gap:0 1rem}
.ranges{display:flex;gap:.4rem;flex-wrap:wrap}.ranges a[aria-current=page]{background:var(--accent);border-color:var(--accent);color:#fff}
figure.chart,figure.meter{margin:0}figure.chart figcaption,figure.meter figcaption{font-weight:600;margin-bottom:.3rem}
figure.chart svg{width:100%;height:auto;display:block}
.chart text{font-size:12px;fill:var(--muted)}.chart .unit{font-size:12px;fill:var(--fg)}
.chart .grid{stroke:var(--line);stroke-width:1}.chart .baseline,.chart .tick{stroke:var(--muted);stroke-width:1}
.legend{display:flex;flex-wrap:wrap;gap:.2rem 1rem;list-style:none;padding:0;margin:0 0 .3rem;font-size:.85rem}
.swatch{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;margin-right:.35rem;vertical-align:-.1rem}
.k-completed,.k-first_try{fill:#2da44e;background:#2da44e;stroke:#2da44e}
.k-failed,.k-dead{fill:#cf222e;background:#cf222e;stroke:#cf222e}
.k-expired,.k-retried{fill:#bf8700;background:#bf8700;stroke:#bf8700}
.k-rejected{fill:#8250df;background:#8250df;stroke:#8250df}
.k-p50{fill:#1f5fbf;background:#1f5fbf;stroke:#1f5fbf}.k-p95{fill:#d1242f;background:#d1242f;stroke:#d1242f}
.k-p0{fill:#1f5fbf;background:#1f5fbf}.k-p1{fill:#2da44e;background:#2da44e}.k-p2{fill:#bf8700;background:#bf8700}
.k-p3{fill:#8250df;background:#8250df}.k-p4{fill:#cf222e;background:#cf222e}.k-p5{fill:#57606a;background:#57606a}
.chart g.line polyline{fill:none;stroke-width:2}.chart g.line circle{stroke:none}
.chart-table{margin-top:.4rem;font-size:.85rem}.chart-table summary{cursor:pointer;color:var(--accent)}
.chart-table table{margin-top:.4rem}.chart-table td,.chart-table th{padding:.2rem .5rem}
.meter svg{width:100%;max-width:40rem;height:1.2rem;display:block}.meter-track{fill:#eaeef2}
.m-ok{fill:var(--ok)}.m-near{fill:var(--warn)}.m-over{fill:var(--bad)}.meter-text{margin:.3rem 0 0;color:var(--muted)}
ul.batches{list-style:none;padding:0;margin:0}ul.batches li{padding:.5rem 0;border-top:1px solid var(--line)}ul.batches li:first-child{border-top:0}
@media (max-width:720px){
 main{padding:.6rem}
 table.list thead{display:none}table.list,table.list tbody,table.list tr,table.list td{display:block;width:100%}
 table.list tr{background:var(--card);border:1px solid var(--line);border-radius:8px;margin-bottom:.6rem;padding:.3rem .2rem}
 table.list td{border:0;padding:.2rem .6rem}
 table.list td[data-label]::before{content:attr(data-label);display:block;font-size:.72rem;color:var(--muted);text-transform:uppercase}
 dl.facts{grid-template-columns:1fr}dl.facts dd{margin-bottom:.3rem}
 header.top .who{margin-left:0;width:100%}
}
`;
