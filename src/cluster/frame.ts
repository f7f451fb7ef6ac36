import { createHmac, timingSafeEqual } from "node:crypto";
import { Packr } from "msgpackr";

/** Heartbeat frames are tiny; anything bigger is refused before decoding. */
export const FRAME_MAX_BYTES = 512;
const TAG_BYTES = 32;
/**
 * v2 added the echo of the receiver's boot, v3 the jobs the sender holds; v1 and v2 frames (an
 * agent not yet upgraded) are still read, and say nothing of jobs.
 */
const FRAME_VERSION = 3;
/** Job names carried in a frame, as many as fit well inside FRAME_MAX_BYTES (the rest are left out). */
const HOLDS_MAX_BYTES = 256;
/** Superseded boots of the peer remembered per link, so their captured frames stay refused. */
export const OLD_BOOTS_KEPT = 16;

export type FrameRejection = "bad-mac" | "replayed" | "malformed" | "oversized" | "unknown-peer" | "unconfirmed";
/**
 * `holds`: jobs the sender ran or was bringing in when it sent the frame (null from v1 and v2). The
 * list may be cut short to fit the frame: a name in it is a claim, a name missing proves nothing.
 */
export type OpenedFrame = { ok: true; from: string; sentAt: number; holds: string[] | null } | { ok: false; reason: FrameRejection };

const packr = new Packr({ useRecords: false });

/**
 * Authenticated heartbeat frames: msgpackr [version, cluster, from, link, boot, seq, sentAt, echo,
 * holds] then an HMAC-SHA256 tag over those bytes with the cluster key. A frame is accepted once: within
 * one boot of the sender its seq must grow; a new boot must send a frame newer (by the sender's
 * clock) than the last accepted, and frames of a superseded boot are refused for good.
 *
 * Those rules live in memory, so after the receiver restarts they would accept frames captured
 * before: `echo` is the receiver's boot as the sender last heard it, and a frame that does not echo
 * the receiver's current boot is refused ("unconfirmed"). It cannot have been made before this
 * boot began, whatever the clocks say. A restart costs an interval or two: the peer must hear the
 * new boot first (learnt from any authentic frame, even one refused) before it echoes it.
 */
export function createFrameCodec(options: { cluster: string; self: string; peer: string; key: Buffer; boot: string }) {
  let seq = 0;
  /** The peer's boot as its last authentic frame gave it: what this node's frames echo. */
  let peerBoot = "";
  let peerBootSentAt = -1;
  /**
   * The version this node's frames are sealed in: the newest until the peer's frames show it
   * runs an older agent, which refuses newer frames as malformed (a rolling upgrade). Then its
   * own version, so the link stays up while the two versions differ.
   */
  let sealedVersion = FRAME_VERSION;
  const seen = new Map<string, { boot: string; seq: number; sentAt: number; oldBoots: string[] }>();
  const tag = (bytes: Uint8Array) => createHmac("sha256", options.key).update(bytes).digest();

  return {
    seal(link: string, sentAt: number, holds: readonly string[] = []): Buffer {
      seq += 1;
      const fields = [sealedVersion, options.cluster, options.self, link, options.boot, seq, sentAt, peerBoot, fitting(holds)];
      const body = packr.pack(fields.slice(0, FIELDS[sealedVersion]));
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
      if (!Array.isArray(fields) || fields.length !== FIELDS[fields[0] as number]) return { ok: false, reason: "malformed" };
      const [version, cluster, from, frameLink, boot, frameSeq, sentAt, echo, holds] = fields as unknown[];
      if (typeof from !== "string" || typeof boot !== "string" || !Number.isSafeInteger(frameSeq) || !Number.isSafeInteger(sentAt) || (version !== 1 && typeof echo !== "string"))
        return { ok: false, reason: "malformed" };
      if (version === FRAME_VERSION && !(Array.isArray(holds) && holds.every((h) => typeof h === "string"))) return { ok: false, reason: "malformed" };
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
      // Authentic, not a known replay, and the newest by the peer's clock (old frames replayed after a
      // restart must not make this node echo a past boot): what this node echoes from now on.
      if (t > peerBootSentAt) {
        peerBoot = boot;
        peerBootSentAt = t;
        sealedVersion = version as number;
      }
      if (version !== 1 && echo !== options.boot) return { ok: false, reason: "unconfirmed" };
      const oldBoots = !last ? [] : boot === last.boot ? last.oldBoots : [last.boot, ...last.oldBoots].slice(0, OLD_BOOTS_KEPT);
      seen.set(link, { boot, seq: n, sentAt: Math.max(t, last?.sentAt ?? 0), oldBoots });
      return { ok: true, from, sentAt: sentAt as number, holds: version === FRAME_VERSION ? (holds as string[]) : null };
    },
  };
}

/** Fields per frame version. */
const FIELDS: Record<number, number> = { 1: 7, 2: 8, 3: 9 };

/** The first names that fit in HOLDS_MAX_BYTES: a frame says less rather than grow past its bound. */
function fitting(holds: readonly string[]): string[] {
  const kept: string[] = [];
  let bytes = 0;
  for (const name of holds) {
    bytes += Buffer.byteLength(name) + 3;
    if (bytes > HOLDS_MAX_BYTES) break;
    kept.push(name);
  }
  return kept;
}
export type FrameCodec = ReturnType<typeof createFrameCodec>;
