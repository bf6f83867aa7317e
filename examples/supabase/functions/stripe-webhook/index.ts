// Supabase Edge Function: Stripe's Checkout webhook enqueues the track once it is paid, once per
// checkout session however often Stripe delivers the events (enqueue_job_once with the session id
// as key). The signature is verified first (Stripe-Signature: t=..., v1=HMAC-SHA256 of "t.body"
// with the endpoint's signing secret, within 5 minutes).
//
// Paid means the session's payment_status is "paid" (or "no_payment_required", e.g. a 100% coupon).
// With a delayed payment method (SEPA debit, ACH, Boleto, ...) checkout.session.completed arrives
// with payment_status "unpaid" and nothing is enqueued; checkout.session.async_payment_succeeded
// follows when the money is there (days later) and enqueues; async_payment_failed enqueues nothing.
//
// Deploy: supabase functions deploy stripe-webhook --no-verify-jwt   (Stripe sends no Supabase JWT)
// Stripe Dashboard -> Webhooks: send checkout.session.completed and
// checkout.session.async_payment_succeeded to the function's URL.
// Env: STRIPE_WEBHOOK_SECRET (whsec_...), SUPABASE_DB_URL (set by Supabase).
// When creating the Checkout Session, the app sets client_reference_id to the signed-in user's id
// and metadata.minutes / metadata.track_id.
import postgres from "npm:postgres@3.4.5";

const sql = postgres(Deno.env.get("SUPABASE_DB_URL")!, { prepare: false, max: 2 });
const TOLERANCE_S = 300;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const encoder = new TextEncoder();
// Events that may complete a purchase, and the payment states in which the track is paid for.
const FULFILLING_EVENTS = new Set(["checkout.session.completed", "checkout.session.async_payment_succeeded"]);
const PAID = new Set(["paid", "no_payment_required"]);

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

function timingSafeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/** True when `header` signs `body` with `secret` and is recent (Stripe's scheme v1). */
export async function verifyStripeSignature(
  body: string,
  header: string,
  secret: string,
  nowS = Date.now() / 1000,
): Promise<boolean> {
  const parts = header.split(",").map((p) => p.trim().split("=", 2));
  const t = parts.find(([k]) => k === "t")?.[1];
  const signatures = parts.filter(([k]) => k === "v1").map(([, v]) => v);
  if (!t || !/^\d+$/.test(t) || signatures.length === 0) return false;
  if (Math.abs(nowS - Number(t)) > TOLERANCE_S) return false;
  const key = await crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, encoder.encode(`${t}.${body}`)));
  const expected = Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join("");
  return signatures.some((s) => timingSafeEqual(s, expected));
}

export async function handler(req: Request): Promise<Response> {
  if (req.method !== "POST") return json(405, { error: "method_not_allowed" });
  const body = await req.text(); // the raw body: the signature is over these exact bytes
  const secret = Deno.env.get("STRIPE_WEBHOOK_SECRET") ?? "";
  if (!secret || !(await verifyStripeSignature(body, req.headers.get("Stripe-Signature") ?? "", secret))) {
    return json(400, { error: "bad_signature" });
  }
  const event = JSON.parse(body);
  if (!FULFILLING_EVENTS.has(event.type)) return json(200, { received: true, ignored: event.type });

  const session = event.data?.object ?? {};
  if (!PAID.has(session.payment_status)) {
    // Not paid yet (a delayed payment method): async_payment_succeeded will come when it is.
    return json(200, { received: true, enqueued: false, payment_status: session.payment_status ?? null });
  }
  const userId = session.client_reference_id;
  const minutes = Number(session.metadata?.minutes ?? 10);
  const trackId = session.metadata?.track_id ?? null;
  if (
    typeof session.id !== "string" || !UUID.test(userId ?? "") || !Number.isInteger(minutes) || minutes < 1 ||
    minutes > 60 ||
    (trackId !== null && !UUID.test(trackId))
  ) {
    console.error("stripe-webhook: checkout session without a valid user, minutes or track_id", session.id);
    return json(200, { received: true, enqueued: false }); // retrying cannot fix it
  }
  const duration = minutes * 60;
  const payload: postgres.JSONValue = {
    spec_version: 1,
    duration_s: duration,
    layers: [
      {
        type: "binaural",
        carrier_hz: 200,
        schedule: [{ t_s: 0, beat_hz: 10 }, { t_s: duration, beat_hz: 6 }],
        gain_db: -14,
      },
      { type: "noise", color: "pink", gain_db: -22 },
    ],
  };
  try {
    const [row] = await sql`
      select audio_queue.enqueue_job_once(
        p_idempotency_key => ${"stripe-checkout:" + session.id},
        p_payload => ${sql.json(payload)},
        p_track_id => ${trackId}::uuid,
        p_user_id => ${userId}::uuid) as id`;
    return json(200, { received: true, job_id: row.id });
  } catch (e) {
    // At the user's live-job limit (PT429) or a database hiccup: answer 503, Stripe retries later
    // (for up to three days), and the key keeps it to one job.
    console.error("stripe-webhook: enqueue failed", (e as { code?: string }).code);
    return json(503, { error: "try_again_later" });
  }
}

if (import.meta.main) Deno.serve(handler);
