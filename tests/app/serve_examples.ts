// Test runner: serves the example Edge Functions on 127.0.0.1 as Supabase routes them,
// POST /functions/v1/<name>. Usage: deno run -A serve_examples.ts <port> <functions dir URL>
const [port, dir] = Deno.args;
const names = ["enqueue-track", "stripe-webhook"];
const routes: Record<string, (req: Request) => Promise<Response>> = {};
for (const name of names) routes[name] = (await import(`${dir}/${name}/index.ts`)).handler;
Deno.serve({ hostname: "127.0.0.1", port: Number(port), onListen: () => console.log("listening") }, (req) => {
  const name = new URL(req.url).pathname.replace(/^\/functions\/v1\//, "");
  return routes[name]?.(req) ?? Promise.resolve(new Response("no such function", { status: 404 }));
});
