import { createHmac, timingSafeEqual } from "node:crypto";
import { Packr } from "msgpackr";

/** Heartbeat frames are tiny; anything bigger is refused before decoding. */
export const FRAME_MAX_BYTES = 512;
const TAG_BYTES = 32;
const FRAME_VERSION = 1;
/** Superseded boots of the peer remembered per link, so their captured frames stay refused. */
export const OLD_BOOTS_KEPT = 16;

export type FrameRejection = "bad-mac" | "replayed" | "malformed" | "oversized" | "unknown-peer";
export type OpenedFrame = { ok: true; from: string; sentAt: number } | { ok: false; reason: FrameRejection };

const packr = new Packr({ useRecords: false });

/**
 * Authenticated heartbeat frames: msgpackr [version, cluster, from, link, boot, seq, sentAt] then an
 * HMAC-SHA256 tag over those bytes with the cluster key. A frame is accepted once: within one boot of
 * the sender its seq must grow; a new boot must send a frame newer (by the sender's clock) than the
 * last accepted, and frames of a superseded boot are refused for good.
 */
export function createFrameCodec(options: { cluster: string; self: string; peer: string; key: Buffer; boot: string }) {
  let seq = 0;
  const seen = new Map<string, { boot: string; seq: number; sentAt: number; oldBoots: string[] }>();
  const tag = (bytes: Uint8Array) => createHmac("sha256", options.key).update(bytes).digest();

  return {
    seal(link: string, sentAt: number): Buffer {
      seq += 1;
      const body = packr.pack([FRAME_VERSION, options.cluster, options.self, link, options.boot, seq, sentAt]);
      return Buffer.concat([body, tag(body)]);
    },
    open(bytes: Buffer, link: string): OpenedFrame {
      if (bytes.length > FRAME_MAX_BYTES) return { ok: false, reason: "oversized" };
      if (bytes.length <= TAG_BYTES) return { ok: false, reason: "malformed" };
      const body = bytes.subarray(0, bytes.length - TAG_BYTES);
      if (!timingSafeEqual(tag(body), bytes.subarray(bytes.length - TAG_BYTES))) return { ok: false, reason: "bad-mac" };
      let fields: unknown;
      try {
        fields = packr.unpack(body);
      } catch {
        return { ok: false, reason: "malformed" };
      }
      if (!Array.isArray(fields) || fields.length !== 7) return { ok: false, reason: "malformed" };
      const [version, cluster, from, frameLink, boot, frameSeq, sentAt] = fields as unknown[];
      if (version !== FRAME_VERSION || typeof from !== "string" || typeof boot !== "string" || !Number.isSafeInteger(frameSeq) || !Number.isSafeInteger(sentAt))
        return { ok: false, reason: "malformed" };
      if (cluster !== options.cluster || from !== options.peer) return { ok: false, reason: "unknown-peer" };
      // A frame captured on one link and replayed on another is still a replay.
      if (frameLink !== link) return { ok: false, reason: "replayed" };
      const last = seen.get(link);
      const n = frameSeq as number;
      const t = sentAt as number;
      if (last) {
        if (boot === last.boot && n <= last.seq) return { ok: false, reason: "replayed" };
        if (boot !== last.boot && (t <= last.sentAt || last.oldBoots.includes(boot))) return { ok: false, reason: "replayed" };
      }
      const oldBoots = !last ? [] : boot === last.boot ? last.oldBoots : [last.boot, ...last.oldBoots].slice(0, OLD_BOOTS_KEPT);
      seen.set(link, { boot, seq: n, sentAt: Math.max(t, last?.sentAt ?? 0), oldBoots });
      return { ok: true, from, sentAt: sentAt as number };
    },
  };
}
export type FrameCodec = ReturnType<typeof createFrameCodec>;
