// The benchmark's yardstick: a bare Hono Worker that answers 200 to everything, run by the same
// wrangler and workerd as the relay. The relay's throughput is reported as a fraction of this one.
import { Hono } from "hono";

const app = new Hono();
app.all("*", (c) => c.json({ ok: true }));

export default app;
