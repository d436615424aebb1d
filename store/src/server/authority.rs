//! Repairs the `:authority` of client requests before hyper/h2 sees them.
//!
//! etcd's Go client (etcdctl 3.4 `endpoint status`/`endpoint hashkv`, some 3.5 builds) sends the
//! raw endpoint string as the HTTP/2 `:authority`, e.g. `http://127.0.0.1:2379`. Go's gRPC server
//! ignores it; h2 rejects it as a malformed authority and resets the stream with PROTOCOL_ERROR,
//! and has no option to relax that. [`AuthorityFix`] sits between the accepted socket and tonic
//! and rewrites the client→server byte stream:
//!
//! * the 24-byte preface and every frame other than HEADERS/CONTINUATION pass through untouched,
//!   in place in the reader's buffer (no copy); bytes that are not HTTP/2 pass through as they are;
//! * each header block (HEADERS plus its CONTINUATIONs) is collected and HPACK-decoded with a
//!   decoder that tracks the client's encoder. While every `:authority` seen on the connection is
//!   valid the block is forwarded as the client encoded it (re-framed: padding dropped, priority
//!   kept), so the server's HPACK table keeps mirroring the client's. From the first block whose
//!   `:authority` h2 would reject on, every block is re-encoded without the dynamic table
//!   (static-table indexes and literals "without indexing"), which leaves the server's table
//!   untouched and so is valid whatever the client's table holds. The bad authority becomes its
//!   authority part (`http://h:1/x` → `h:1`), or is dropped when nothing valid is left;
//! * rewritten blocks go out as one HEADERS frame plus CONTINUATIONs of at most 16384 bytes, the
//!   frame size every HTTP/2 peer accepts.
//!
//! Server→client bytes pass through untouched. Input that breaks HTTP/2 framing or HPACK fails
//! the read, which closes the connection, as the server would have on seeing it.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_stream::{Stream, StreamExt};
use tonic::codegen::http::uri::Authority;
use tonic::transport::server::Connected;

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// SETTINGS_MAX_FRAME_SIZE's floor: every peer accepts frames this large.
const MAX_FRAME_PAYLOAD: usize = 16_384;
/// HPACK's initial dynamic table size (what the server's SETTINGS_HEADER_TABLE_SIZE allows unless
/// it says otherwise; tonic does not).
const DEFAULT_TABLE_SIZE: usize = 4096;
/// The largest dynamic table a client may ask for (h2 would refuse anything over what it
/// advertised, 4096 by default; this only bounds our memory).
const TABLE_SIZE_LIMIT: usize = 64 * 1024;
/// Bounds on one header block, encoded and decoded (hyper refuses lists over 16 KiB anyway, per
/// stream; these are far above that so that h2 still gets to answer such requests itself).
const MAX_BLOCK: usize = 1 << 20;
const MAX_LIST: usize = 1 << 20;
const MAX_BLOCK_FRAMES: usize = 1024;
/// Caller buffers smaller than this are served through a staging buffer.
const MIN_DIRECT: usize = 16;
/// Buffers keep at most this much capacity between uses.
const RETAIN: usize = 64 * 1024;

/// Wraps each accepted connection of `incoming` in an [`AuthorityFix`].
pub(crate) fn fix_incoming<S, IO, E>(incoming: S) -> impl Stream<Item = Result<AuthorityFix<IO>, E>>
where
    S: Stream<Item = Result<IO, E>>,
{
    incoming.map(|conn| conn.map(AuthorityFix::new))
}

/// A client connection whose incoming HTTP/2 header blocks get a valid `:authority` (see the
/// module docs). Writes go straight to the inner connection.
pub(crate) struct AuthorityFix<T> {
    inner: T,
    rw: Rewriter,
    /// Bytes read from `inner` but not yet through `rw` (what followed a rewritten header block
    /// that did not fit where the original was).
    raw: Vec<u8>,
    raw_pos: usize,
    /// Bytes through `rw` not yet handed to the reader.
    out: Vec<u8>,
    out_pos: usize,
}

impl<T> AuthorityFix<T> {
    pub(crate) fn new(inner: T) -> Self {
        Self { inner, rw: Rewriter::new(), raw: Vec::new(), raw_pos: 0, out: Vec::new(), out_pos: 0 }
    }

    /// Hands out what `out` holds; false if it was empty.
    fn emit_out(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        if self.out_pos == self.out.len() {
            return false;
        }
        let n = (self.out.len() - self.out_pos).min(buf.remaining());
        buf.put_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        if self.out_pos == self.out.len() {
            reset(&mut self.out);
            self.out_pos = 0;
        }
        true
    }

    /// Appends `bytes` to the reader's buffer, queueing in `out` what does not fit.
    fn sink(&mut self, buf: &mut ReadBuf<'_>, bytes: &[u8]) {
        let n = bytes.len().min(buf.remaining());
        buf.put_slice(&bytes[..n]);
        self.out.extend_from_slice(&bytes[n..]);
    }

    /// Runs `raw` through the rewriter into `buf` until either is exhausted or output queues up.
    fn drain_raw(&mut self, buf: &mut ReadBuf<'_>) -> io::Result<()> {
        let raw = std::mem::take(&mut self.raw);
        let mut pos = self.raw_pos;
        let mut result = Ok(());
        while pos < raw.len() && buf.remaining() > 0 && self.out.is_empty() {
            // At most what fits, so that passed-through bytes always can be handed out.
            let lim = (raw.len() - pos).min(buf.remaining());
            match self.rw.step(&raw[pos..pos + lim]) {
                Err(e) => {
                    result = Err(e.into());
                    break;
                }
                Ok(Ev::Pass(n)) => {
                    buf.put_slice(&raw[pos..pos + n]);
                    pos += n;
                }
                Ok(Ev::Absorb(n)) => pos += n,
                Ok(Ev::Header(n)) => {
                    pos += n;
                    let header = self.rw.hdr;
                    self.sink(buf, &header);
                }
                Ok(Ev::Block(n)) => {
                    pos += n;
                    let frames = std::mem::take(&mut self.rw.frames);
                    self.sink(buf, &frames);
                    self.rw.frames = frames;
                }
            }
        }
        self.raw = raw;
        if pos == self.raw.len() {
            reset(&mut self.raw);
            pos = 0;
        }
        self.raw_pos = pos;
        result
    }

    /// Runs the bytes just read into `buf[start..]` through the rewriter where they lie:
    /// passed-through bytes stay put (or move down over a header block that shrank), header
    /// blocks are replaced by their rewrite. A rewrite that does not fit where its original was
    /// moves the rest of the read to `raw`.
    fn process_in_place(&mut self, buf: &mut ReadBuf<'_>, start: usize) -> io::Result<()> {
        let mut end = buf.filled().len();
        let (mut r, mut w) = (start, start);
        let mut moved = false;
        while r < end {
            match self.rw.step(&buf.filled()[r..end])? {
                Ev::Pass(n) => {
                    if w != r {
                        buf.filled_mut().copy_within(r..r + n, w);
                    }
                    r += n;
                    w += n;
                }
                Ev::Absorb(n) => r += n,
                Ev::Header(n) => {
                    r += n;
                    if n == FRAME_HEADER_LEN && w + n == r {
                        // The header is still where it was read.
                        w = r;
                    } else {
                        let header = self.rw.hdr;
                        if !place(buf, &mut w, r, &header) {
                            self.move_out(buf, w, r, end, &header);
                            (end, moved) = (r, true);
                        }
                    }
                }
                Ev::Block(n) => {
                    r += n;
                    let frames = std::mem::take(&mut self.rw.frames);
                    if !place(buf, &mut w, r, &frames) {
                        self.move_out(buf, w, r, end, &frames);
                        (end, moved) = (r, true);
                    }
                    self.rw.frames = frames;
                }
            }
        }
        if moved {
            self.drain_raw(buf)
        } else {
            buf.set_filled(w);
            Ok(())
        }
    }

    /// `bytes` do not fit in the gap `buf[w..r]`: they follow `buf[..w]`, and the unprocessed
    /// `buf[r..end]` goes to `raw` (which is empty while reads are processed in place).
    fn move_out(&mut self, buf: &mut ReadBuf<'_>, w: usize, r: usize, end: usize, bytes: &[u8]) {
        self.raw.extend_from_slice(&buf.filled()[r..end]);
        buf.set_filled(w);
        self.sink(buf, bytes);
    }

    fn poll_read_direct(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>>
    where
        T: AsyncRead + Unpin,
    {
        loop {
            if self.emit_out(buf) {
                return Poll::Ready(Ok(()));
            }
            if self.rw.state == State::Failed {
                return Poll::Ready(Err(Malformed("connection already failed").into()));
            }
            let start = buf.filled().len();
            if self.raw_pos < self.raw.len() {
                self.drain_raw(buf)?;
                if buf.filled().len() > start {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            // A frame header split by the last read goes back in front, so that the frame can
            // pass through in place.
            let held = if let State::FrameHeader = self.rw.state { self.rw.hdr_len } else { 0 };
            buf.put_slice(&self.rw.hdr[..held]);
            match Pin::new(&mut self.inner).poll_read(cx, buf) {
                Poll::Ready(Ok(())) if buf.filled().len() > start + held => {}
                other => {
                    // Nothing new: pending, an error, or the end of the stream.
                    buf.set_filled(start);
                    return other;
                }
            }
            if held > 0 {
                self.rw.hdr_len = 0;
            }
            self.process_in_place(buf, start)?;
            if buf.filled().len() > start {
                return Poll::Ready(Ok(()));
            }
        }
    }

    /// For readers with tiny buffers: reads through a staging buffer.
    fn poll_read_small(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>>
    where
        T: AsyncRead + Unpin,
    {
        loop {
            if self.emit_out(buf) {
                return Poll::Ready(Ok(()));
            }
            let mut staging = [0u8; 1024];
            let mut staged = ReadBuf::new(&mut staging);
            ready!(self.poll_read_direct(cx, &mut staged))?;
            if staged.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            // What was read comes before whatever the read left queued.
            self.out.splice(self.out_pos..self.out_pos, staged.filled().iter().copied());
        }
    }
}

/// Writes `bytes` over the consumed gap `buf[*w..r]` if they fit.
fn place(buf: &mut ReadBuf<'_>, w: &mut usize, r: usize, bytes: &[u8]) -> bool {
    if bytes.len() > r - *w {
        return false;
    }
    buf.filled_mut()[*w..*w + bytes.len()].copy_from_slice(bytes);
    *w += bytes.len();
    true
}

fn reset(v: &mut Vec<u8>) {
    v.clear();
    if v.capacity() > RETAIN {
        v.shrink_to(RETAIN);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for AuthorityFix<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            Poll::Ready(Ok(()))
        } else if buf.remaining() < MIN_DIRECT {
            this.poll_read_small(cx, buf)
        } else {
            this.poll_read_direct(cx, buf)
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<T: Connected> Connected for AuthorityFix<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Client input that breaks HTTP/2 framing or HPACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Malformed(&'static str);

impl From<Malformed> for io::Error {
    fn from(Malformed(what): Malformed) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, format!("malformed HTTP/2 from client: {what}"))
    }
}

/// What the rewriter did with the first `n` bytes it was given.
#[derive(Debug, PartialEq, Eq)]
enum Ev {
    /// They go out as they are.
    Pass(usize),
    /// Held (part of a frame header or header block).
    Absorb(usize),
    /// They completed the header of a frame that passes through: `Rewriter::hdr` goes out.
    Header(usize),
    /// They completed a header block: `Rewriter::frames` goes out.
    Block(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Matched this much of the preface so far.
    Preface(usize),
    /// Not HTTP/2: everything passes.
    Opaque,
    /// Reading a frame header into `hdr`.
    FrameHeader,
    /// Passing through this much more frame payload.
    Payload(usize),
    /// Reading the header of a CONTINUATION into `hdr`.
    BlockHeader,
    /// Collecting this much more of a header block frame's payload.
    BlockPayload(usize),
    Failed,
}

/// How an `:authority` value goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repair {
    Keep,
    /// Becomes `value[.0 .. .1]`.
    Slice(usize, usize),
    Drop,
}

/// The client→server HTTP/2 parser and header block rewriter, fed bytes in order by [`Rewriter::step`].
struct Rewriter {
    state: State,
    hdr: [u8; FRAME_HEADER_LEN],
    hdr_len: usize,
    // The header block being collected and its current frame.
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    block_frames: usize,
    frame_flags: u8,
    frame_len: usize,
    frame_is_headers: bool,
    block: Vec<u8>,
    decoder: Decoder,
    fields: HeaderList,
    /// Whether header blocks are re-encoded (from the first one with a bad authority on).
    reencode: bool,
    encoded: Vec<u8>,
    /// The last `:authority` value seen and what becomes of it.
    authority: Option<(Vec<u8>, Repair)>,
    /// The frames of the last completed header block.
    frames: Vec<u8>,
}

impl Rewriter {
    fn new() -> Self {
        Self {
            state: State::Preface(0),
            hdr: [0; FRAME_HEADER_LEN],
            hdr_len: 0,
            stream: 0,
            end_stream: false,
            priority: None,
            block_frames: 0,
            frame_flags: 0,
            frame_len: 0,
            frame_is_headers: false,
            block: Vec::new(),
            decoder: Decoder::new(),
            fields: HeaderList::default(),
            reencode: false,
            encoded: Vec::new(),
            authority: None,
            frames: Vec::new(),
        }
    }

    /// Consumes a prefix of `input` (which must not be empty).
    fn step(&mut self, input: &[u8]) -> Result<Ev, Malformed> {
        let result = self.step_inner(input);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn step_inner(&mut self, input: &[u8]) -> Result<Ev, Malformed> {
        match self.state {
            State::Failed => Err(Malformed("connection already failed")),
            State::Opaque => Ok(Ev::Pass(input.len())),
            State::Preface(matched) => {
                let n = (PREFACE.len() - matched).min(input.len());
                self.state = if input[..n] != PREFACE[matched..matched + n] {
                    State::Opaque
                } else if matched + n == PREFACE.len() {
                    State::FrameHeader
                } else {
                    State::Preface(matched + n)
                };
                Ok(Ev::Pass(n))
            }
            State::Payload(left) => {
                let n = left.min(input.len());
                self.state = if n == left { State::FrameHeader } else { State::Payload(left - n) };
                Ok(Ev::Pass(n))
            }
            State::FrameHeader | State::BlockHeader => {
                let n = (FRAME_HEADER_LEN - self.hdr_len).min(input.len());
                self.hdr[self.hdr_len..self.hdr_len + n].copy_from_slice(&input[..n]);
                self.hdr_len += n;
                if self.hdr_len < FRAME_HEADER_LEN {
                    return Ok(Ev::Absorb(n));
                }
                self.hdr_len = 0;
                let h = &self.hdr;
                let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                let (kind, flags) = (h[3], h[4]);
                let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                if self.state == State::FrameHeader {
                    if kind != TYPE_HEADERS {
                        self.state = if len == 0 { State::FrameHeader } else { State::Payload(len) };
                        return Ok(Ev::Header(n));
                    }
                    self.stream = stream;
                    self.end_stream = flags & FLAG_END_STREAM != 0;
                    self.priority = None;
                    self.block_frames = 0;
                    self.frame_is_headers = true;
                    reset(&mut self.block);
                } else {
                    if kind != TYPE_CONTINUATION || stream != self.stream {
                        return Err(Malformed("header block interrupted"));
                    }
                    self.frame_is_headers = false;
                }
                self.block_frames += 1;
                if self.block_frames > MAX_BLOCK_FRAMES || self.block.len() + len > MAX_BLOCK {
                    return Err(Malformed("header block too large"));
                }
                self.frame_flags = flags;
                self.frame_len = len;
                self.block.reserve(len);
                if len == 0 {
                    return self.finish_frame(n);
                }
                self.state = State::BlockPayload(len);
                Ok(Ev::Absorb(n))
            }
            State::BlockPayload(left) => {
                let n = left.min(input.len());
                self.block.extend_from_slice(&input[..n]);
                if n < left {
                    self.state = State::BlockPayload(left - n);
                    return Ok(Ev::Absorb(n));
                }
                self.finish_frame(n)
            }
        }
    }

    /// A HEADERS or CONTINUATION frame's payload is in.
    fn finish_frame(&mut self, consumed: usize) -> Result<Ev, Malformed> {
        if self.frame_is_headers {
            // `block` holds just this frame's payload: keep only the fragment.
            let mut start = 0;
            let mut pad = 0;
            if self.frame_flags & FLAG_PADDED != 0 {
                pad = usize::from(*self.block.first().ok_or(Malformed("HEADERS padding"))?);
                start = 1;
            }
            if self.frame_flags & FLAG_PRIORITY != 0 {
                let fields = self.block.get(start..start + 5).ok_or(Malformed("HEADERS priority"))?;
                self.priority = Some([fields[0], fields[1], fields[2], fields[3], fields[4]]);
                start += 5;
            }
            if start + pad > self.frame_len {
                return Err(Malformed("HEADERS padding"));
            }
            self.block.truncate(self.frame_len - pad);
            self.block.drain(..start);
        }
        if self.frame_flags & FLAG_END_HEADERS == 0 {
            self.state = State::BlockHeader;
            return Ok(Ev::Absorb(consumed));
        }
        self.complete_block()?;
        self.state = State::FrameHeader;
        Ok(Ev::Block(consumed))
    }

    /// Decodes the collected block and frames what goes on in its place into `frames`.
    fn complete_block(&mut self) -> Result<(), Malformed> {
        self.decoder.decode(&self.block, &mut self.fields)?;
        if !self.reencode {
            for i in 0..self.fields.len() {
                if self.fields.name(i) == b":authority"
                    && repair(&mut self.authority, self.fields.value(i)) != Repair::Keep
                {
                    self.reencode = true;
                }
            }
        }
        let fragment = if self.reencode {
            self.encoded.clear();
            for i in 0..self.fields.len() {
                let (name, mut value, never) = self.fields.get(i);
                if name == b":authority" {
                    match repair(&mut self.authority, value) {
                        Repair::Keep => {}
                        Repair::Slice(from, to) => value = &value[from..to],
                        Repair::Drop => continue,
                    }
                }
                encode_field(&mut self.encoded, name, value, never);
            }
            &self.encoded
        } else {
            &self.block
        };
        write_frames(&mut self.frames, fragment, self.stream, self.end_stream, self.priority);
        reset(&mut self.block);
        Ok(())
    }
}

/// What becomes of `:authority: value`, remembering the answer for the connection's next request.
fn repair(cache: &mut Option<(Vec<u8>, Repair)>, value: &[u8]) -> Repair {
    if let Some((seen, verdict)) = cache {
        if seen.as_slice() == value {
            return *verdict;
        }
    }
    let verdict = repair_authority(value);
    let seen = cache.get_or_insert_with(|| (Vec::new(), Repair::Keep));
    seen.0.clear();
    seen.0.extend_from_slice(value);
    seen.1 = verdict;
    verdict
}

/// h2 accepts exactly what `http` parses as an authority.
fn valid_authority(value: &[u8]) -> bool {
    Authority::try_from(value).is_ok()
}

/// Keeps a valid authority; otherwise strips a `scheme://` prefix and anything from the first
/// `/`, `?` or `#`, dropping the field if that is still not valid.
fn repair_authority(value: &[u8]) -> Repair {
    if valid_authority(value) {
        return Repair::Keep;
    }
    let mut from = 0;
    if let Some(at) = value.windows(3).position(|w| w == b"://") {
        let scheme = &value[..at];
        let is_scheme = scheme.first().is_some_and(u8::is_ascii_alphabetic)
            && scheme.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if is_scheme {
            from = at + 3;
        }
    }
    let to = value[from..].iter().position(|b| matches!(b, b'/' | b'?' | b'#')).map_or(value.len(), |i| from + i);
    if valid_authority(&value[from..to]) {
        Repair::Slice(from, to)
    } else {
        Repair::Drop
    }
}

/// Frames a header block fragment as HEADERS (+ CONTINUATION) frames of at most
/// [`MAX_FRAME_PAYLOAD`] bytes.
fn write_frames(out: &mut Vec<u8>, fragment: &[u8], stream: u32, end_stream: bool, priority: Option<[u8; 5]>) {
    reset(out);
    let prio_len = if priority.is_some() { 5 } else { 0 };
    let first = fragment.len().min(MAX_FRAME_PAYLOAD - prio_len);
    let mut flags = 0;
    if end_stream {
        flags |= FLAG_END_STREAM;
    }
    if priority.is_some() {
        flags |= FLAG_PRIORITY;
    }
    if first == fragment.len() {
        flags |= FLAG_END_HEADERS;
    }
    frame_header(out, prio_len + first, TYPE_HEADERS, flags, stream);
    if let Some(p) = priority {
        out.extend_from_slice(&p);
    }
    out.extend_from_slice(&fragment[..first]);
    let mut rest = &fragment[first..];
    while !rest.is_empty() {
        let n = rest.len().min(MAX_FRAME_PAYLOAD);
        let flags = if n == rest.len() { FLAG_END_HEADERS } else { 0 };
        frame_header(out, n, TYPE_CONTINUATION, flags, stream);
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
}

fn frame_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
}

// ---- HPACK (RFC 7541) ----

/// A decoded header list: every name and value in one buffer.
#[derive(Default)]
struct HeaderList {
    bytes: Vec<u8>,
    /// (start, end of name, end of value, never indexed)
    fields: Vec<(usize, usize, usize, bool)>,
    size: usize,
}

impl HeaderList {
    fn clear(&mut self) {
        reset(&mut self.bytes);
        self.fields.clear();
        self.size = 0;
    }

    fn len(&self) -> usize {
        self.fields.len()
    }

    fn get(&self, i: usize) -> (&[u8], &[u8], bool) {
        let (start, name_end, end, never) = self.fields[i];
        (&self.bytes[start..name_end], &self.bytes[name_end..end], never)
    }

    fn name(&self, i: usize) -> &[u8] {
        self.get(i).0
    }

    fn value(&self, i: usize) -> &[u8] {
        self.get(i).1
    }

    /// Counts a field against [`MAX_LIST`] the way HTTP/2 sizes header lists.
    fn charge(&mut self, len: usize) -> Result<(), Malformed> {
        self.size += len + 32;
        if self.size > MAX_LIST {
            return Err(Malformed("header list too large"));
        }
        Ok(())
    }

    /// Ends a field whose name and value were appended from `start` on.
    fn finish(&mut self, start: usize, name_end: usize, never: bool) -> Result<(), Malformed> {
        self.charge(self.bytes.len() - start)?;
        self.fields.push((start, name_end, self.bytes.len(), never));
        Ok(())
    }
}

/// An HPACK decoder: tracks the dynamic table of the encoder on the other end.
struct Decoder {
    /// Newest first: (name and value, name length).
    table: VecDeque<(Box<[u8]>, usize)>,
    size: usize,
    max_size: usize,
}

impl Decoder {
    fn new() -> Self {
        Self { table: VecDeque::new(), size: 0, max_size: DEFAULT_TABLE_SIZE }
    }

    fn entry(&self, index: usize) -> Result<(&[u8], &[u8]), Malformed> {
        match index {
            0 => Err(Malformed("HPACK index 0")),
            1..=61 => Ok(STATIC_TABLE[index - 1]),
            _ => {
                let (bytes, name_len) = self.table.get(index - 62).ok_or(Malformed("HPACK index out of range"))?;
                Ok(bytes.split_at(*name_len))
            }
        }
    }

    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            match self.table.pop_back() {
                Some((bytes, _)) => self.size -= bytes.len() + 32,
                None => break,
            }
        }
    }

    fn insert(&mut self, name: &[u8], value: &[u8]) {
        let size = name.len() + value.len() + 32;
        self.evict(size);
        if size <= self.max_size {
            self.table.push_front(([name, value].concat().into_boxed_slice(), name.len()));
            self.size += size;
        }
    }

    fn decode(&mut self, block: &[u8], out: &mut HeaderList) -> Result<(), Malformed> {
        out.clear();
        let mut i = 0;
        while i < block.len() {
            let first = block[i];
            if first & 0x80 != 0 {
                let index = read_int(block, &mut i, 7)?;
                let (name, value) = self.entry(index)?;
                out.charge(name.len() + value.len())?;
                let start = out.bytes.len();
                out.bytes.extend_from_slice(name);
                out.bytes.extend_from_slice(value);
                out.fields.push((start, start + name.len(), out.bytes.len(), false));
            } else if first & 0xe0 == 0x20 {
                if out.len() > 0 {
                    return Err(Malformed("HPACK table size update after a field"));
                }
                let size = read_int(block, &mut i, 5)?;
                if size > TABLE_SIZE_LIMIT {
                    return Err(Malformed("HPACK table size update too large"));
                }
                self.max_size = size;
                self.evict(0);
            } else {
                // Literal: with incremental indexing (01), without (0000) or never indexed (0001).
                let indexing = first & 0x40 != 0;
                let never = !indexing && first & 0x10 != 0;
                let index = read_int(block, &mut i, if indexing { 6 } else { 4 })?;
                let start = out.bytes.len();
                if index == 0 {
                    read_string(block, &mut i, &mut out.bytes)?;
                } else {
                    out.bytes.extend_from_slice(self.entry(index)?.0);
                }
                let name_end = out.bytes.len();
                read_string(block, &mut i, &mut out.bytes)?;
                out.finish(start, name_end, never)?;
                if indexing {
                    let (name, value) = out.bytes[start..].split_at(name_end - start);
                    self.insert(name, value);
                }
            }
        }
        Ok(())
    }
}

/// Reads an HPACK integer with a `prefix`-bit prefix at `block[*i]`.
fn read_int(block: &[u8], i: &mut usize, prefix: u8) -> Result<usize, Malformed> {
    const TRUNCATED: Malformed = Malformed("HPACK integer truncated");
    let mask = (1u8 << prefix) - 1;
    let mut value = usize::from(block.get(*i).ok_or(TRUNCATED)? & mask);
    *i += 1;
    if value < usize::from(mask) {
        return Ok(value);
    }
    for shift in [0, 7, 14, 21] {
        let b = *block.get(*i).ok_or(TRUNCATED)?;
        *i += 1;
        value += usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(Malformed("HPACK integer too large"))
}

/// Appends the HPACK string literal at `block[*i]` to `out`.
fn read_string(block: &[u8], i: &mut usize, out: &mut Vec<u8>) -> Result<(), Malformed> {
    let huffman = block.get(*i).ok_or(Malformed("HPACK string truncated"))? & 0x80 != 0;
    let len = read_int(block, i, 7)?;
    let bytes = block.get(*i..*i + len).ok_or(Malformed("HPACK string truncated"))?;
    *i += len;
    if huffman {
        huffman_decode(bytes, out)
    } else {
        out.extend_from_slice(bytes);
        Ok(())
    }
}

fn write_int(out: &mut Vec<u8>, flags: u8, prefix: u8, value: usize) {
    let mask = (1u8 << prefix) - 1;
    if value < usize::from(mask) {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | mask);
    let mut rest = value - usize::from(mask);
    while rest >= 0x80 {
        out.push((rest as u8) | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Encodes a field without touching the decoder's dynamic table: indexed if it is in the static
/// table, else a literal (never indexed if it was) with the static table's name index if any.
fn encode_field(out: &mut Vec<u8>, name: &[u8], value: &[u8], never: bool) {
    let mut name_index = 0;
    for (i, &(n, v)) in STATIC_TABLE.iter().enumerate() {
        if n == name {
            if v == value && !never {
                write_int(out, 0x80, 7, i + 1);
                return;
            }
            if name_index == 0 {
                name_index = i + 1;
            }
        }
    }
    write_int(out, if never { 0x10 } else { 0x00 }, 4, name_index);
    if name_index == 0 {
        write_int(out, 0, 7, name.len());
        out.extend_from_slice(name);
    }
    write_int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

/// Canonical decoding tables for HPACK's Huffman code: the codes of each length are consecutive
/// (`first[len]..first[len] + count[len]`), their symbols at `symbols[base[len]..]` in order.
struct Huffman {
    first: [u32; 31],
    count: [u32; 31],
    base: [usize; 31],
    symbols: [u8; 256],
}

const HUFFMAN: Huffman = build_huffman();

const fn build_huffman() -> Huffman {
    let mut first = [u32::MAX; 31];
    let mut count = [0u32; 31];
    let mut s = 0;
    while s < 256 {
        let len = HUFFMAN_LENGTHS[s] as usize;
        count[len] += 1;
        if HUFFMAN_CODES[s] < first[len] {
            first[len] = HUFFMAN_CODES[s];
        }
        s += 1;
    }
    let mut base = [0usize; 31];
    let mut total = 0;
    let mut len = 0;
    while len < 31 {
        base[len] = total;
        total += count[len] as usize;
        len += 1;
    }
    let mut symbols = [0u8; 256];
    let mut placed = [false; 256];
    s = 0;
    while s < 256 {
        let len = HUFFMAN_LENGTHS[s] as usize;
        let offset = (HUFFMAN_CODES[s] - first[len]) as usize;
        // Fails the build if the codes of a length are not consecutive.
        assert!(offset < count[len] as usize && !placed[base[len] + offset]);
        placed[base[len] + offset] = true;
        symbols[base[len] + offset] = s as u8;
        s += 1;
    }
    Huffman { first, count, base, symbols }
}

fn huffman_decode(bytes: &[u8], out: &mut Vec<u8>) -> Result<(), Malformed> {
    let mut code = 0u32;
    let mut len = 0usize;
    for &byte in bytes {
        for bit in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> bit) & 1);
            len += 1;
            let offset = code.wrapping_sub(HUFFMAN.first[len]);
            if offset < HUFFMAN.count[len] {
                out.push(HUFFMAN.symbols[HUFFMAN.base[len] + offset as usize]);
                code = 0;
                len = 0;
            } else if len == 30 {
                return Err(Malformed("HPACK Huffman EOS or invalid code"));
            }
        }
    }
    // Padding: at most 7 bits, all ones (a prefix of EOS).
    if len > 7 || code != (1 << len) - 1 {
        return Err(Malformed("HPACK Huffman padding"));
    }
    Ok(())
}

/// RFC 7541 Appendix A.
const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// RFC 7541 Appendix B: the code of each symbol (EOS, 0x3fffffff/30, is not a symbol here).
const HUFFMAN_CODES: [u32; 256] = [
    0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7, 0xfffffe8, 0xffffea,
    0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec, 0xfffffed, 0xfffffee, 0xfffffef, 0xffffff0,
    0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3, 0xffffff4, 0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9,
    0xffffffa, 0xffffffb, 0x14, 0x3f8, 0x3f9, 0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa, 0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa, 0x16,
    0x17, 0x18, 0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x5c, 0xfb, 0x7ffc, 0x20, 0xffb, 0x3fc,
    0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
    0x6e, 0x6f, 0x70, 0x71, 0x72, 0xfc, 0x73, 0xfd, 0x1ffb, 0x7fff0, 0x1ffc, 0x3ffc, 0x22, 0x7ffd, 0x3, 0x23, 0x4,
    0x24, 0x5, 0x25, 0x26, 0x27, 0x6, 0x74, 0x75, 0x28, 0x29, 0x2a, 0x7, 0x2b, 0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78,
    0x79, 0x7a, 0x7b, 0x7ffe, 0x7fc, 0x3ffd, 0x1ffd, 0xffffffc, 0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3,
    0x3fffd4, 0x3fffd5, 0x7fffd9, 0x3fffd6, 0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb, 0x7fffdf,
    0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3, 0x7fffe4, 0x1fffdc, 0x3fffd8,
    0x7fffe5, 0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef, 0x3fffda, 0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8,
    0x7fffe9, 0x1fffde, 0x7fffea, 0x3fffdd, 0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb, 0x7fffec, 0x1fffe0,
    0x1fffe1, 0x3fffe0, 0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef, 0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4,
    0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1, 0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7, 0x7ffff2, 0x3fffe8,
    0x1ffffec, 0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf, 0x3ffffe5, 0xfffff1, 0x1ffffed, 0x7fff2,
    0x1fffe3, 0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7, 0x7ffffe2, 0xfffff2, 0x1fffe4, 0x1fffe5, 0x3ffffe8,
    0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4, 0x7ffffe5, 0xfffec, 0xfffff3, 0xfffed, 0x1fffe6, 0x3fffe9, 0x1fffe7,
    0x1fffe8, 0x7ffff3, 0x3fffea, 0x3fffeb, 0x1ffffee, 0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4, 0x3ffffeb,
    0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8, 0x7ffffe9, 0x7ffffea, 0x7ffffeb, 0xffffffe, 0x7ffffec,
    0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee,
];

/// RFC 7541 Appendix B: the bit length of each symbol's code.
const HUFFMAN_LENGTHS: [u8; 256] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28,
    28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12,
    10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6,
    5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22,
    22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20,
    22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28,
    27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28,
    27, 27, 27, 27, 27, 26,
];

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    type Fields = Vec<(Vec<u8>, Vec<u8>, bool)>;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        frame_header(&mut out, payload.len(), kind, flags, stream);
        out.extend_from_slice(payload);
        out
    }

    fn huffman_encode(s: &[u8]) -> Vec<u8> {
        let (mut out, mut acc, mut bits) = (Vec::new(), 0u64, 0u32);
        for &b in s {
            let len = u32::from(HUFFMAN_LENGTHS[usize::from(b)]);
            acc = (acc << len) | u64::from(HUFFMAN_CODES[usize::from(b)]);
            bits += len;
            while bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
            acc &= (1 << bits) - 1;
        }
        if bits > 0 {
            out.push(((acc << (8 - bits)) as u8) | ((1u8 << (8 - bits)) - 1));
        }
        out
    }

    fn decode(decoder: &mut Decoder, block: &[u8]) -> Result<Fields, Malformed> {
        let mut list = HeaderList::default();
        decoder.decode(block, &mut list)?;
        Ok((0..list.len())
            .map(|i| {
                let (n, v, never) = list.get(i);
                (n.to_vec(), v.to_vec(), never)
            })
            .collect())
    }

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec(), false)).collect()
    }

    fn table(decoder: &Decoder) -> Vec<(String, String)> {
        decoder
            .table
            .iter()
            .map(|(bytes, name_len)| {
                let (n, v) = bytes.split_at(*name_len);
                (String::from_utf8_lossy(n).into_owned(), String::from_utf8_lossy(v).into_owned())
            })
            .collect()
    }

    #[derive(Clone, Copy, Debug)]
    enum Rep {
        /// Indexed if in a table, else literal with incremental indexing.
        Index,
        /// Literal without indexing.
        Plain,
        /// Literal never indexed.
        Never,
    }

    /// A client HPACK encoder that, like Go's, uses the dynamic table (and optionally Huffman).
    struct TestEncoder {
        table: VecDeque<(Vec<u8>, Vec<u8>)>,
        size: usize,
        max: usize,
        huffman: bool,
        update: Option<usize>,
    }

    impl TestEncoder {
        fn new(huffman: bool) -> Self {
            Self { table: VecDeque::new(), size: 0, max: DEFAULT_TABLE_SIZE, huffman, update: None }
        }

        fn resize(&mut self, max: usize) {
            self.update = Some(max);
        }

        fn string(&self, out: &mut Vec<u8>, s: &[u8]) {
            if self.huffman {
                let h = huffman_encode(s);
                write_int(out, 0x80, 7, h.len());
                out.extend_from_slice(&h);
            } else {
                write_int(out, 0, 7, s.len());
                out.extend_from_slice(s);
            }
        }

        fn evict(&mut self, room: usize) {
            while self.size + room > self.max {
                let Some((n, v)) = self.table.pop_back() else { break };
                self.size -= n.len() + v.len() + 32;
            }
        }

        fn encode(&mut self, list: &[(&str, &str, Rep)]) -> Vec<u8> {
            let mut out = Vec::new();
            if let Some(max) = self.update.take() {
                write_int(&mut out, 0x20, 5, max);
                self.max = max;
                self.evict(0);
            }
            for &(name, value, rep) in list {
                let (name, value) = (name.as_bytes(), value.as_bytes());
                if let Rep::Index = rep {
                    if let Some(i) = STATIC_TABLE.iter().position(|&(n, v)| n == name && v == value) {
                        write_int(&mut out, 0x80, 7, i + 1);
                        continue;
                    }
                    if let Some(i) = self.table.iter().position(|(n, v)| n == name && v == value) {
                        write_int(&mut out, 0x80, 7, 62 + i);
                        continue;
                    }
                }
                let name_index = STATIC_TABLE
                    .iter()
                    .position(|&(n, _)| n == name)
                    .map(|i| i + 1)
                    .or_else(|| self.table.iter().position(|(n, _)| n == name).map(|i| 62 + i))
                    .unwrap_or(0);
                match rep {
                    Rep::Index => write_int(&mut out, 0x40, 6, name_index),
                    Rep::Plain => write_int(&mut out, 0x00, 4, name_index),
                    Rep::Never => write_int(&mut out, 0x10, 4, name_index),
                }
                if name_index == 0 {
                    self.string(&mut out, name);
                }
                self.string(&mut out, value);
                if let Rep::Index = rep {
                    let size = name.len() + value.len() + 32;
                    self.evict(size);
                    if size <= self.max {
                        self.table.push_front((name.to_vec(), value.to_vec()));
                        self.size += size;
                    }
                }
            }
            out
        }
    }

    /// Reads `data` at most `chunk` bytes at a time, pending every other call if `pend`.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        chunk: usize,
        pend: bool,
        flip: bool,
    }

    impl AsyncRead for Trickle {
        fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            if this.pend {
                this.flip = !this.flip;
                if this.flip {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
            let n = this.chunk.min(this.data.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.data[this.pos..this.pos + n]);
            this.pos += n;
            Poll::Ready(Ok(()))
        }
    }

    async fn run_shim(input: &[u8], chunk: usize, read_size: usize, pend: bool) -> io::Result<Vec<u8>> {
        let mut fix = AuthorityFix::new(Trickle { data: input.to_vec(), pos: 0, chunk, pend, flip: false });
        let mut out = Vec::new();
        let mut buf = vec![0u8; read_size];
        loop {
            let n = fix.read(&mut buf).await?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// The shim's output for `input`, checked to be the same however the input is split into
    /// reads and however small the reader's buffer.
    async fn shim(input: &[u8]) -> Vec<u8> {
        let reference = run_shim(input, usize::MAX, 1 << 16, false).await.unwrap();
        for chunk in [1, 2, 8, 9, 10, 100, 4096] {
            for read_size in [1, 5, 16, 17, 64, 1000, 1 << 16] {
                let pend = (chunk + read_size) % 2 == 0;
                let out = run_shim(input, chunk, read_size, pend).await.unwrap();
                assert!(out == reference, "chunk {chunk}, read size {read_size}, pend {pend}");
            }
        }
        reference
    }

    async fn shim_err(input: &[u8]) -> io::Error {
        for (chunk, read_size) in [(usize::MAX, 1 << 16), (1, 1), (7, 100)] {
            let err = run_shim(input, chunk, read_size, false).await.expect_err("malformed input must fail");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        }
        run_shim(input, usize::MAX, 1 << 16, false).await.unwrap_err()
    }

    /// A header block as the client frames it.
    struct Block {
        stream: u32,
        end_stream: bool,
        priority: Option<[u8; 5]>,
        pad: Option<u8>,
        /// Lengths of the fragment pieces before the last one (HEADERS, then CONTINUATIONs).
        pieces: Vec<usize>,
        fields: Vec<(&'static str, &'static str, Rep)>,
    }

    fn block(stream: u32, fields: &[(&'static str, &'static str, Rep)]) -> Block {
        Block { stream, end_stream: false, priority: None, pad: None, pieces: vec![], fields: fields.to_vec() }
    }

    enum Input {
        Frame(Vec<u8>),
        Block(Block),
    }

    #[derive(Debug, PartialEq)]
    enum Item {
        Block { stream: u32, end_stream: bool, priority: Option<[u8; 5]>, fields: Fields },
        Frame(Vec<u8>),
    }

    /// What the authorities used in these tests must become (None: dropped).
    fn expected_authority(value: &str) -> Option<&str> {
        match value {
            "http://127.0.0.1:2379" => Some("127.0.0.1:2379"),
            "https://h:1/x" => Some("h:1"),
            "http://[::1]:2379/" => Some("[::1]:2379"),
            "#initially=[http://a:1]" => None,
            valid => Some(valid),
        }
    }

    /// The client's bytes for `inputs`, and the items the server must get.
    fn connection(encoder: &mut TestEncoder, inputs: Vec<Input>) -> (Vec<u8>, Vec<Item>) {
        let mut bytes = PREFACE.to_vec();
        let mut want = Vec::new();
        for input in inputs {
            match input {
                Input::Frame(f) => {
                    bytes.extend_from_slice(&f);
                    want.push(Item::Frame(f));
                }
                Input::Block(b) => {
                    let fragment = encoder.encode(&b.fields);
                    let mut rest = &fragment[..];
                    let mut pieces = Vec::new();
                    for &len in &b.pieces {
                        let (piece, tail) = rest.split_at(len.min(rest.len()));
                        pieces.push(piece);
                        rest = tail;
                    }
                    pieces.push(rest);
                    let last = pieces.len() - 1;
                    for (i, piece) in pieces.iter().enumerate() {
                        let mut flags = if i == last { FLAG_END_HEADERS } else { 0 };
                        if i > 0 {
                            bytes.extend(frame(TYPE_CONTINUATION, flags, b.stream, piece));
                            continue;
                        }
                        let mut payload = Vec::new();
                        if let Some(pad) = b.pad {
                            flags |= FLAG_PADDED;
                            payload.push(pad);
                        }
                        if let Some(p) = b.priority {
                            flags |= FLAG_PRIORITY;
                            payload.extend_from_slice(&p);
                        }
                        if b.end_stream {
                            flags |= FLAG_END_STREAM;
                        }
                        payload.extend_from_slice(piece);
                        payload.extend(std::iter::repeat_n(0u8, usize::from(b.pad.unwrap_or(0))));
                        bytes.extend(frame(TYPE_HEADERS, flags, b.stream, &payload));
                    }
                    let fields = b
                        .fields
                        .iter()
                        .filter_map(|&(n, v, rep)| {
                            let v = if n == ":authority" { expected_authority(v)? } else { v };
                            Some((n.as_bytes().to_vec(), v.as_bytes().to_vec(), matches!(rep, Rep::Never)))
                        })
                        .collect();
                    want.push(Item::Block { stream: b.stream, end_stream: b.end_stream, priority: b.priority, fields });
                }
            }
        }
        (bytes, want)
    }

    /// Parses the shim's output as a server would: every block decoded by one decoder. Also
    /// returns that decoder's table size after each block.
    fn parse_output(bytes: &[u8]) -> (Vec<Item>, Vec<usize>) {
        assert_eq!(&bytes[..PREFACE.len()], PREFACE);
        let mut decoder = Decoder::new();
        let (mut items, mut sizes) = (Vec::new(), Vec::new());
        let mut i = PREFACE.len();
        let next = |i: &mut usize| {
            let h = &bytes[*i..*i + FRAME_HEADER_LEN];
            let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
            let frame = &bytes[*i..*i + FRAME_HEADER_LEN + len];
            *i += FRAME_HEADER_LEN + len;
            (h[3], h[4], stream, frame)
        };
        while i < bytes.len() {
            let (kind, flags, stream, frame) = next(&mut i);
            if kind != TYPE_HEADERS {
                items.push(Item::Frame(frame.to_vec()));
                continue;
            }
            assert!(frame.len() - FRAME_HEADER_LEN <= MAX_FRAME_PAYLOAD);
            assert_eq!(flags & FLAG_PADDED, 0, "padding is dropped");
            let mut payload = &frame[FRAME_HEADER_LEN..];
            let mut priority = None;
            if flags & FLAG_PRIORITY != 0 {
                priority = Some([payload[0], payload[1], payload[2], payload[3], payload[4]]);
                payload = &payload[5..];
            }
            let mut fragment = payload.to_vec();
            let mut end = flags & FLAG_END_HEADERS != 0;
            while !end {
                let (kind, flags, cont_stream, frame) = next(&mut i);
                assert_eq!((kind, cont_stream), (TYPE_CONTINUATION, stream));
                assert!(frame.len() - FRAME_HEADER_LEN <= MAX_FRAME_PAYLOAD);
                fragment.extend_from_slice(&frame[FRAME_HEADER_LEN..]);
                end = flags & FLAG_END_HEADERS != 0;
            }
            let fields = decode(&mut decoder, &fragment).expect("the shim's output decodes");
            items.push(Item::Block { stream, end_stream: flags & FLAG_END_STREAM != 0, priority, fields });
            sizes.push(decoder.size);
        }
        (items, sizes)
    }

    const SETTINGS: u8 = 0x4;
    const DATA: u8 = 0x0;
    const PING: u8 = 0x6;
    const WINDOW_UPDATE: u8 = 0x8;
    const RST_STREAM: u8 = 0x3;
    const GOAWAY: u8 = 0x7;

    fn request(authority: &'static str, path: &'static str) -> Vec<(&'static str, &'static str, Rep)> {
        vec![
            (":method", "POST", Rep::Index),
            (":scheme", "http", Rep::Index),
            (":path", path, Rep::Index),
            (":authority", authority, Rep::Index),
            ("content-type", "application/grpc", Rep::Index),
            ("user-agent", "grpc-go/1.26.0", Rep::Index),
            ("te", "trailers", Rep::Index),
        ]
    }

    #[test]
    fn huffman_round_trips_and_rejects_bad_padding() {
        let mut out = Vec::new();
        huffman_decode(&[0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff], &mut out).unwrap();
        assert_eq!(out, b"www.example.com");
        let all: Vec<u8> = (0..=255).chain((0..=255).rev()).collect();
        for s in [&all[..], b"", b"a", b"127.0.0.1:2379", b"application/grpc"] {
            out.clear();
            huffman_decode(&huffman_encode(s), &mut out).unwrap();
            assert_eq!(out, s);
        }
        // "a" is 00011 (5 bits): padding must be three 1 bits, at most 7 bits long.
        assert!(huffman_decode(&[0b0001_1110], &mut out).is_err());
        assert!(huffman_decode(&[0b0001_1111, 0xff], &mut out).is_err());
        // EOS (thirty 1 bits) must not appear.
        assert!(huffman_decode(&[0xff, 0xff, 0xff, 0xfc], &mut out).is_err());
    }

    /// RFC 7541 C.4: requests with Huffman-coded strings sharing one dynamic table.
    #[test]
    fn decodes_rfc7541_request_sequence() {
        let mut d = Decoder::new();
        let first =
            [0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff];
        let base = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")];
        assert_eq!(decode(&mut d, &first).unwrap(), fields(&base));
        let second = [0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf];
        let mut want = base.to_vec();
        want.push(("cache-control", "no-cache"));
        assert_eq!(decode(&mut d, &second).unwrap(), fields(&want));
        let third = [
            0x82, 0x87, 0x85, 0xbf, 0x40, 0x88, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f, 0x89, 0x25, 0xa8, 0x49,
            0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf,
        ];
        let want = [
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ];
        assert_eq!(decode(&mut d, &third).unwrap(), fields(&want));
        let t: Vec<(String, String)> =
            [("custom-key", "custom-value"), ("cache-control", "no-cache"), (":authority", "www.example.com")]
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
        assert_eq!(table(&d), t);
        assert_eq!(d.size, 164);
    }

    /// RFC 7541 C.6: responses through a 256-byte table, with evictions (the size set in band).
    #[test]
    fn decodes_rfc7541_response_sequence_with_evictions() {
        let mut d = Decoder::new();
        let mut first = vec![0x3f, 0xe1, 0x01]; // table size update: 256
        first.extend_from_slice(&[
            0x48, 0x82, 0x64, 0x02, 0x58, 0x85, 0xae, 0xc3, 0x77, 0x1a, 0x4b, 0x61, 0x96, 0xd0, 0x7a, 0xbe, 0x94, 0x10,
            0x54, 0xd4, 0x44, 0xa8, 0x20, 0x05, 0x95, 0x04, 0x0b, 0x81, 0x66, 0xe0, 0x82, 0xa6, 0x2d, 0x1b, 0xff, 0x6e,
            0x91, 0x9d, 0x29, 0xad, 0x17, 0x18, 0x63, 0xc7, 0x8f, 0x0b, 0x97, 0xc8, 0xe9, 0xae, 0x82, 0xae, 0x43, 0xd3,
        ]);
        let date = "Mon, 21 Oct 2013 20:13:21 GMT";
        let want =
            [(":status", "302"), ("cache-control", "private"), ("date", date), ("location", "https://www.example.com")];
        assert_eq!(decode(&mut d, &first).unwrap(), fields(&want));
        assert_eq!(d.size, 222);
        let second = [0x48, 0x83, 0x64, 0x0e, 0xff, 0xc1, 0xc0, 0xbf];
        let want =
            [(":status", "307"), ("cache-control", "private"), ("date", date), ("location", "https://www.example.com")];
        assert_eq!(decode(&mut d, &second).unwrap(), fields(&want));
        assert_eq!(d.size, 222);
        let third = [
            0x88, 0xc1, 0x61, 0x96, 0xd0, 0x7a, 0xbe, 0x94, 0x10, 0x54, 0xd4, 0x44, 0xa8, 0x20, 0x05, 0x95, 0x04, 0x0b,
            0x81, 0x66, 0xe0, 0x84, 0xa6, 0x2d, 0x1b, 0xff, 0xc0, 0x5a, 0x83, 0x9b, 0xd9, 0xab, 0x77, 0xad, 0x94, 0xe7,
            0x82, 0x1d, 0xd7, 0xf2, 0xe6, 0xc7, 0xb3, 0x35, 0xdf, 0xdf, 0xcd, 0x5b, 0x39, 0x60, 0xd5, 0xaf, 0x27, 0x08,
            0x7f, 0x36, 0x72, 0xc1, 0xab, 0x27, 0x0f, 0xb5, 0x29, 0x1f, 0x95, 0x87, 0x31, 0x60, 0x65, 0xc0, 0x03, 0xed,
            0x4e, 0xe5, 0xb1, 0x06, 0x3d, 0x50, 0x07,
        ];
        let cookie = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
        let want = [
            (":status", "200"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
            ("location", "https://www.example.com"),
            ("content-encoding", "gzip"),
            ("set-cookie", cookie),
        ];
        assert_eq!(decode(&mut d, &third).unwrap(), fields(&want));
        let t: Vec<(String, String)> =
            [("set-cookie", cookie), ("content-encoding", "gzip"), ("date", "Mon, 21 Oct 2013 20:13:22 GMT")]
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
        assert_eq!(table(&d), t);
        assert_eq!(d.size, 215);
    }

    #[test]
    fn decoder_rejects_malformed_blocks() {
        let bad: [&[u8]; 9] = [
            &[0x80],                               // index 0
            &[0xbe],                               // index 62, empty dynamic table
            &[0x41, 0x05, b'a'],                   // string shorter than its length
            &[0x41],                               // value missing
            &[0x82, 0x20],                         // size update after a field
            &[0x3f, 0xe2, 0xff, 0x03],             // size update to 65537, over the limit
            &[0x1f, 0xff, 0xff, 0xff, 0xff, 0x01], // integer too long
            &[0x7f],                               // integer truncated
            &[0x04, 0x81, 0x00],                   // Huffman string, bad padding
        ];
        for block in bad {
            assert!(decode(&mut Decoder::new(), block).is_err(), "{block:x?}");
        }
        // A field larger than the whole table empties it and is not inserted.
        let mut d = Decoder::new();
        let mut block = vec![0x3f, 0x11]; // size update: 48
        block.extend_from_slice(&[0x40, 0x01, b'a', 0x01, b'b']); // 34 bytes: fits
        assert_eq!(decode(&mut d, &block).unwrap(), fields(&[("a", "b")]));
        assert_eq!(d.size, 34);
        let big = [
            0x40, 0x01, b'c', 0x10, b'x', b'x', b'x', b'x', b'x', b'x', b'x', b'x', b'x', b'x', b'x', b'x', b'x', b'x',
            b'x', b'x',
        ];
        decode(&mut d, &big).unwrap();
        assert_eq!((d.size, d.table.len()), (0, 0));
    }

    #[test]
    fn repairs_invalid_authorities_only() {
        let fixed = |v: &str| match repair_authority(v.as_bytes()) {
            Repair::Keep => Some(v.to_string()),
            Repair::Slice(from, to) => Some(v[from..to].to_string()),
            Repair::Drop => None,
        };
        for valid in ["127.0.0.1:2379", "localhost", "localhost:2379", "[::1]:2379", "example.com", "u@h:1"] {
            assert_eq!(repair_authority(valid.as_bytes()), Repair::Keep, "{valid}");
        }
        assert_eq!(fixed("http://127.0.0.1:2379").as_deref(), Some("127.0.0.1:2379"));
        assert_eq!(fixed("https://h:1/x").as_deref(), Some("h:1"));
        assert_eq!(fixed("http://[::1]:2379/").as_deref(), Some("[::1]:2379"));
        assert_eq!(fixed("127.0.0.1:2379/path?q#f").as_deref(), Some("127.0.0.1:2379"));
        assert_eq!(fixed("unix+x://h:1").as_deref(), Some("h:1"));
        assert_eq!(fixed("#initially=[http://a:1]"), None);
        assert_eq!(fixed("unix:///run/etcd.sock"), None);
        assert_eq!(fixed(""), None);
        // The verdict is remembered per connection.
        let mut cache = None;
        assert_eq!(repair(&mut cache, b"http://a:1"), Repair::Slice(7, 10));
        assert_eq!(repair(&mut cache, b"http://a:1"), Repair::Slice(7, 10));
        assert_eq!(repair(&mut cache, b"a:1"), Repair::Keep);
    }

    #[tokio::test]
    async fn valid_authorities_pass_through_byte_for_byte() {
        let mut enc = TestEncoder::new(true);
        let req = block(1, &request("127.0.0.1:2379", "/etcdserverpb.KV/Range"));
        let (bytes, want) = connection(
            &mut enc,
            vec![
                Input::Frame(frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0xff, 0xff])),
                Input::Frame(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 0x10, 0])),
                Input::Block(req),
                Input::Frame(frame(DATA, 1, 1, &[0, 0, 0, 0, 2, 10, 1])),
                Input::Block(block(3, &request("127.0.0.1:2379", "/etcdserverpb.KV/Put"))),
                Input::Frame(frame(PING, 0, 0, &[1, 2, 3, 4, 5, 6, 7, 8])),
                Input::Frame(frame(DATA, 1, 3, &[0, 0, 0, 0, 0])),
            ],
        );
        let out = shim(&bytes).await;
        assert!(out == bytes, "unchanged");
        assert_eq!(parse_output(&out).0, want);
    }

    #[tokio::test]
    async fn rewrites_bad_authority_and_keeps_later_blocks_consistent() {
        for huffman in [false, true] {
            let mut enc = TestEncoder::new(huffman);
            let mut inputs = vec![
                Input::Frame(frame(SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 0])),
                Input::Frame(frame(WINDOW_UPDATE, 0, 0, &[0, 0x0f, 0, 0x01])),
                // Valid: forwarded as encoded (less its padding, so what follows moves down), the
                // server's table follows the client's.
                Input::Block(Block { pad: Some(20), ..block(1, &request("127.0.0.1:2379", "/etcdserverpb.KV/Range")) }),
                Input::Frame(frame(DATA, 1, 1, &[0, 0, 0, 0, 2, 10, 1])),
            ];
            // The bug: split over CONTINUATIONs, padded, with priority.
            let mut bad = block(3, &request("http://127.0.0.1:2379", "/etcdserverpb.Maintenance/Status"));
            bad.pieces = vec![3, 1, 10];
            bad.pad = Some(7);
            bad.priority = Some([0x80, 0, 0, 1, 15]);
            inputs.push(Input::Block(bad));
            inputs.push(Input::Frame(frame(DATA, 1, 3, &[0, 0, 0, 0, 0])));
            inputs.push(Input::Frame(frame(PING, 1, 0, &[8, 7, 6, 5, 4, 3, 2, 1])));
            // Later blocks lean on the client's dynamic table.
            let mut again = block(5, &request("http://127.0.0.1:2379", "/etcdserverpb.Maintenance/Status"));
            again.end_stream = true;
            inputs.push(Input::Block(again));
            inputs.push(Input::Frame(frame(RST_STREAM, 0, 5, &[0, 0, 0, 8])));
            let mut sensitive = request("https://h:1/x", "/etcdserverpb.KV/Range");
            sensitive.push(("authorization", "secret-token", Rep::Never));
            sensitive.push(("x-plain", "v", Rep::Plain));
            inputs.push(Input::Block(block(7, &sensitive)));
            // Trailers (no :authority) on the same stream.
            let mut trailers = block(7, &[("grpc-status", "0", Rep::Index), ("x-t", "1", Rep::Index)]);
            trailers.end_stream = true;
            inputs.push(Input::Block(trailers));
            let (mut bytes, mut want) = connection(&mut enc, inputs);

            // Shrink the client's table in band: entries get evicted over the next requests.
            enc.resize(200);
            let mut more = Vec::new();
            for (i, authority) in
                ["127.0.0.1:2379", "http://[::1]:2379/", "#initially=[http://a:1]", "http://127.0.0.1:2379"]
                    .iter()
                    .enumerate()
            {
                let stream = 9 + 2 * i as u32;
                let mut b = block(stream, &request(authority, "/etcdserverpb.Watch/Watch"));
                if i == 1 {
                    b.pieces = vec![1];
                }
                more.push(Input::Block(b));
                more.push(Input::Frame(frame(DATA, 0, stream, &[0, 0, 0, 0, 1, 0])));
            }
            let (tail, tail_want) = connection(&mut enc, more);
            bytes.extend_from_slice(&tail[PREFACE.len()..]);
            want.extend(tail_want);

            let out = shim(&bytes).await;
            let (items, sizes) = parse_output(&out);
            assert_eq!(items, want, "huffman {huffman}");
            // After the first rewrite the server's table never changes again.
            assert!(sizes[0] > 0);
            assert!(sizes[1..].iter().all(|&s| s == sizes[0]), "{sizes:?}");
        }
    }

    #[tokio::test]
    async fn large_rewritten_blocks_are_split_into_frames() {
        let big: &'static str = Box::leak("v".repeat(40_000).into_boxed_str());
        let mut enc = TestEncoder::new(true);
        let mut req = request("http://127.0.0.1:2379", "/etcdserverpb.KV/Put");
        req.push(("x-big", big, Rep::Plain));
        let mut b = block(1, &req);
        b.pieces = vec![16_000];
        b.priority = Some([0, 0, 0, 0, 200]);
        let (bytes, want) =
            connection(&mut enc, vec![Input::Block(b), Input::Frame(frame(DATA, 1, 1, &[0, 0, 0, 0, 0]))]);
        for (chunk, read_size) in [(usize::MAX, 1 << 16), (1000, 100), (3, 8192), (16_384, 16_384)] {
            let out = run_shim(&bytes, chunk, read_size, true).await.unwrap();
            assert_eq!(parse_output(&out).0, want, "chunk {chunk}, read {read_size}");
        }
    }

    #[tokio::test]
    async fn non_http2_input_passes_through() {
        let http1 = b"GET / HTTP/1.1\r\nHost: http://127.0.0.1:2379\r\n\r\n".to_vec();
        let almost = b"PRI * HTTP/2.0\r\n\r\nSX\r\n\r\n\x00\x00\x01\x01\x04\x00\x00\x00\x01\x82".to_vec();
        let binary: Vec<u8> = (0..3000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for input in [http1, almost, binary, Vec::new()] {
            assert!(shim(&input).await == input);
        }
    }

    #[tokio::test]
    async fn malformed_http2_fails_the_read() {
        let mut enc = TestEncoder::new(false);
        let headers = enc.encode(&request("http://127.0.0.1:2379", "/p"));
        let with = |frames: &[Vec<u8>]| {
            let mut bytes = PREFACE.to_vec();
            frames.iter().for_each(|f| bytes.extend_from_slice(f));
            bytes
        };
        let cases = [
            // A DATA frame inside a header block.
            with(&[frame(TYPE_HEADERS, 0, 1, &headers[..4]), frame(DATA, 0, 1, b"x")]),
            // A CONTINUATION of another stream.
            with(&[frame(TYPE_HEADERS, 0, 1, &headers[..4]), frame(TYPE_CONTINUATION, 4, 3, &headers[4..])]),
            // Padding longer than the frame.
            with(&[frame(TYPE_HEADERS, FLAG_PADDED | FLAG_END_HEADERS, 1, &[200, 0x82])]),
            // PRIORITY flag on a frame too short for it.
            with(&[frame(TYPE_HEADERS, FLAG_PRIORITY | FLAG_END_HEADERS, 1, &[0, 0])]),
            // HPACK index 0.
            with(&[frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &[0x80])]),
            // A header block over the limit.
            with(&vec![frame(TYPE_HEADERS, 0, 1, &[0; 16_000]); 70]),
        ];
        for case in cases {
            shim_err(&case).await;
        }
    }

    /// Random client bytes (after the preface) never panic the shim, whatever the read sizes.
    #[test]
    fn random_input_never_panics() {
        use proptest::prelude::*;
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let frames = proptest::collection::vec(
            (0u8..11, any::<u8>(), 0u32..4, proptest::collection::vec(any::<u8>(), 0..40)),
            0..12,
        );
        proptest!(ProptestConfig::with_cases(512), |(frames in frames, chunk in 1usize..20, read in 1usize..40)| {
            let mut bytes = PREFACE.to_vec();
            for (kind, flags, stream, payload) in frames {
                bytes.extend(frame(kind, flags, stream, &payload));
            }
            let _ = rt.block_on(run_shim(&bytes, chunk, read, false));
            let _ = rt.block_on(run_shim(&bytes[PREFACE.len()..], chunk, read, false));
        });
    }

    async fn read_frame(io: &mut tokio::io::DuplexStream) -> (u8, u8, u32, Vec<u8>) {
        let mut h = [0u8; FRAME_HEADER_LEN];
        io.read_exact(&mut h).await.unwrap();
        let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
        let mut payload = vec![0; len];
        io.read_exact(&mut payload).await.unwrap();
        (h[3], h[4], u32::from_be_bytes([h[5], h[6], h[7], h[8]]), payload)
    }

    /// Sends a Go-client-style request with `:authority: http://127.0.0.1:2379` to a tonic
    /// server (no services: any call is answered UNIMPLEMENTED) and returns the grpc-status it
    /// answered with, or the RST_STREAM/GOAWAY error code.
    async fn call_tonic(with_fix: bool) -> Result<Vec<u8>, u32> {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let serve = tonic::transport::Server::builder().add_routes(tonic::service::Routes::default());
        let server = tokio::spawn(async move {
            if with_fix {
                let incoming = tokio_stream::iter([Ok::<_, io::Error>(AuthorityFix::new(server))]);
                serve.serve_with_incoming(incoming.chain(tokio_stream::pending())).await
            } else {
                let incoming = tokio_stream::iter([Ok::<_, io::Error>(server)]);
                serve.serve_with_incoming(incoming.chain(tokio_stream::pending())).await
            }
        });
        let mut enc = TestEncoder::new(true);
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(SETTINGS, 0, 0, &[]));
        for stream in [1, 3] {
            // The second request is mostly indexed from the client's table.
            let block = enc.encode(&request("http://127.0.0.1:2379", "/etcdserverpb.Maintenance/Status"));
            bytes.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, stream, &block));
            bytes.extend(frame(DATA, FLAG_END_STREAM, stream, &[0, 0, 0, 0, 0]));
        }
        client.write_all(&bytes).await.unwrap();
        let mut decoder = Decoder::new();
        let mut statuses = Vec::new();
        let result = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                let (kind, flags, stream, payload) = read_frame(&mut client).await;
                match kind {
                    TYPE_HEADERS => {
                        assert_ne!(flags & FLAG_PADDED, FLAG_PADDED);
                        let fields = decode(&mut decoder, &payload).unwrap();
                        if let Some((_, v, _)) = fields.iter().find(|(n, _, _)| n == b"grpc-status") {
                            statuses.push(v.clone());
                            if stream == 3 {
                                return Ok(statuses);
                            }
                        }
                    }
                    RST_STREAM | GOAWAY => {
                        let code = &payload[payload.len() - 4..];
                        return Err(u32::from_be_bytes([code[0], code[1], code[2], code[3]]));
                    }
                    _ => {}
                }
            }
        })
        .await
        .expect("server answered");
        server.abort();
        result.map(|statuses| statuses.concat())
    }

    #[tokio::test]
    async fn tonic_serves_requests_with_a_scheme_in_the_authority() {
        // Without the shim h2 resets the stream (PROTOCOL_ERROR): the bug.
        assert_eq!(call_tonic(false).await, Err(1));
        // With it both requests reach the router, which answers UNIMPLEMENTED (12).
        assert_eq!(call_tonic(true).await, Ok(b"1212".to_vec()));
    }
}
