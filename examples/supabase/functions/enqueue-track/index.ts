// Supabase Edge Function: a signed-in user asks for a meditation track; this function checks who
// they are, validates what they asked for, builds the render spec itself and enqueues it with
// THAT user's id (never one from the request body). The live-job limit (SQLSTATE PT429) comes
// back as HTTP 429.
//
// Deploy: supabase functions deploy enqueue-track   (verify_jwt stays on)
// Env (set by Supabase): SUPABASE_URL, SUPABASE_ANON_KEY, SUPABASE_DB_URL.
// Client: supabase.functions.invoke("enqueue-track", { body: { text, minutes, noise } })
import postgres from "npm:postgres@3.4.5";

const sql = postgres(Deno.env.get("SUPABASE_DB_URL")!, { prepare: false, max: 2 });

type Request_ = { text: string; minutes: number; noise: "pink" | "brown" | "white" | null; trackId: string | null };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

/** The user the request's access token belongs to (Supabase Auth checks it), or null. */
async function signedInUser(req: Request): Promise<{ id: string } | null> {
  const auth = req.headers.get("Authorization") ?? "";
  if (!auth.startsWith("Bearer ")) return null;
  const res = await fetch(`${Deno.env.get("SUPABASE_URL")}/auth/v1/user`, {
    headers: { Authorization: auth, apikey: Deno.env.get("SUPABASE_ANON_KEY") ?? "" },
  });
  if (!res.ok) return null;
  const user = await res.json();
  return typeof user?.id === "string" && UUID.test(user.id) ? { id: user.id } : null;
}

/** The request's fields, each checked; a string names the field and the rule it broke. */
function validate(body: unknown): Request_ | string {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return "body: must be a JSON object";
  const b = body as Record<string, unknown>;
  if (typeof b.text !== "string" || b.text.trim().length === 0 || b.text.length > 5000) {
    return "text: must be 1 to 5000 characters";
  }
  const minutes = b.minutes ?? 10;
  if (typeof minutes !== "number" || !Number.isInteger(minutes) || minutes < 1 || minutes > 60) {
    return "minutes: must be a whole number from 1 to 60";
  }
  const noise = b.noise ?? null;
  if (noise !== null && noise !== "pink" && noise !== "brown" && noise !== "white") {
    return "noise: must be pink, brown, white or null";
  }
  const trackId = b.track_id ?? null;
  if (trackId !== null && (typeof trackId !== "string" || !UUID.test(trackId))) return "track_id: must be a uuid";
  return { text: b.text, minutes, noise, trackId };
}

/** The render spec (README "Render spec"): built here, so a user cannot ask for anything else. */
function spec(r: Request_): postgres.JSONValue {
  const duration = r.minutes * 60;
  const layers: postgres.JSONValue[] = [
    { type: "speech", text: r.text, provider: "espeak", speed: 0.85, start_s: 3 },
    {
      type: "binaural",
      carrier_hz: 200,
      schedule: [{ t_s: 0, beat_hz: 10 }, { t_s: duration, beat_hz: 6 }],
      gain_db: -14,
    },
  ];
  if (r.noise) layers.push({ type: "noise", color: r.noise, gain_db: -22 });
  return { spec_version: 1, duration_s: duration, fade_in_s: 5, fade_out_s: 10, layers };
}

export async function handler(req: Request): Promise<Response> {
  if (req.method !== "POST") return json(405, { error: "method_not_allowed" });
  const user = await signedInUser(req);
  if (!user) return json(401, { error: "not_signed_in" });
  let body: unknown;
  try {
    body = await req.json();
  } catch {
    return json(400, { error: "invalid_request", message: "body: must be JSON" });
  }
  const r = validate(body);
  if (typeof r === "string") return json(400, { error: "invalid_request", message: r });

  // A retried request (same Idempotency-Key header) gets the same job while it is live. Keys are
  // global in the queue, so they are namespaced by the user.
  const key = req.headers.get("Idempotency-Key");
  const idempotencyKey = key ? `enqueue-track:${user.id}:${key.slice(0, 200)}` : null;
  try {
    const [row] = await sql`
      select audio_queue.enqueue_job(
        p_payload => ${sql.json(spec(r))},
        p_idempotency_key => ${idempotencyKey},
        p_track_id => ${r.trackId}::uuid,
        p_user_id => ${user.id}::uuid) as id`;
    return json(202, { job_id: row.id });
  } catch (e) {
    if ((e as { code?: string }).code === "PT429") {
      return json(429, { error: "too_many_live_jobs", message: (e as Error).message });
    }
    console.error("enqueue-track: enqueue failed", (e as { code?: string }).code);
    return json(500, { error: "enqueue_failed" });
  }
}

if (import.meta.main) Deno.serve(handler);
