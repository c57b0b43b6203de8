//! The chunked transfer coding (RFC 9112 section 7.1) as a byte-at-a-time state machine: it
//! never buffers body data (it returns where the data of its input is), so a body of any size
//! passes through the connection's one buffer; and it is strict where peers disagree, the
//! smuggling ground: a chunk size is 1 to 16 hex digits, extensions are bounded, every line
//! ends in CRLF (a bare LF is an error), and chunk data is followed by CRLF exactly.

/// Longest chunk-size line (size, extensions) and trailer section accepted.
const MAX_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunked body")]
pub struct ChunkError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of the size (`digits` so far).
    Size,
    /// After the size: extensions up to CR.
    Ext,
    /// CR seen at the end of a size line; LF expected.
    SizeLf,
    /// This many data bytes remain.
    Data(u64),
    DataCr,
    DataLf,
    /// In the trailer section, at the start of a line.
    TrailerStart,
    /// In a trailer line.
    Trailer,
    TrailerLf,
    /// CR of the final empty line seen.
    EndLf,
    Done,
}

/// Decodes one chunked body.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
    size: u64,
    digits: u8,
    line: usize,
    /// The trailer section as received (field lines with their CRLFs), when kept.
    trailers: Vec<u8>,
    keep_trailers: bool,
}

/// What one call of [`Decoder::feed`] found in its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Input bytes consumed.
    pub consumed: usize,
    /// Body data within the consumed input (empty: none).
    pub data: (usize, usize),
}

impl Decoder {
    /// `keep_trailers`: collect the trailer fields (the receiver takes them).
    pub fn new(keep_trailers: bool) -> Decoder {
        Decoder {
            state: State::Size,
            size: 0,
            digits: 0,
            line: 0,
            trailers: Vec::new(),
            keep_trailers,
        }
    }

    /// The last CRLF of the body has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The trailer field lines (each ending in CRLF), once done.
    pub fn trailers(&self) -> &[u8] {
        &self.trailers
    }

    /// Consumes framing from `input` up to and including the next run of data, or all of
    /// it; call again with the rest until it is used up or the body is done.
    pub fn feed(&mut self, input: &[u8]) -> Result<Step, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Done => break,
                State::Data(left) => {
                    let take = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    let rest = left - take as u64;
                    self.state = if rest == 0 {
                        State::DataCr
                    } else {
                        State::Data(rest)
                    };
                    return Ok(Step {
                        consumed: i + take,
                        data: (i, i + take),
                    });
                }
                State::Size => {
                    if let Some(d) = hex(b) {
                        if self.digits == 16 {
                            return Err(ChunkError);
                        }
                        self.size = (self.size << 4) | u64::from(d);
                        self.digits += 1;
                    } else if self.digits == 0 {
                        return Err(ChunkError);
                    } else if b == b';' || b == b' ' || b == b'\t' {
                        self.state = State::Ext;
                    } else if b == b'\r' {
                        self.state = State::SizeLf;
                    } else {
                        return Err(ChunkError);
                    }
                    self.line += 1;
                }
                State::Ext => {
                    self.line += 1;
                    if self.line > MAX_LINE || b == b'\n' || (b < 0x20 && b != b'\t' && b != b'\r')
                    {
                        return Err(ChunkError);
                    }
                    if b == b'\r' {
                        self.state = State::SizeLf;
                    }
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError);
                    }
                    self.line = 0;
                    self.digits = 0;
                    self.state = if self.size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data(self.size)
                    };
                    self.size = 0;
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError);
                    }
                    self.state = State::Size;
                }
                State::TrailerStart => {
                    if b == b'\r' {
                        self.state = State::EndLf;
                    } else if b == b'\n' || b == b' ' || b == b'\t' {
                        // Bare LF, or obs-fold of a trailer line.
                        return Err(ChunkError);
                    } else {
                        self.trailer_byte(b)?;
                        self.state = State::Trailer;
                    }
                }
                State::Trailer => {
                    if b == b'\n' {
                        return Err(ChunkError);
                    }
                    self.trailer_byte(b)?;
                    if b == b'\r' {
                        self.state = State::TrailerLf;
                    }
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkError);
                    }
                    self.trailer_byte(b)?;
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(ChunkError);
                    }
                    self.state = State::Done;
                    i += 1;
                    break;
                }
            }
            i += 1;
        }
        Ok(Step {
            consumed: i,
            data: (i, i),
        })
    }

    fn trailer_byte(&mut self, b: u8) -> Result<(), ChunkError> {
        self.line += 1;
        if self.line > MAX_TRAILERS {
            return Err(ChunkError);
        }
        if self.keep_trailers {
            self.trailers.push(b);
        }
        Ok(())
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Writes the size line of a chunk of `len` bytes (`len` > 0).
pub fn chunk_header(out: &mut Vec<u8>, len: usize) {
    use std::io::Write as _;
    let _ = write!(out, "{len:x}\r\n");
}

/// The end of a chunked body: the last chunk, `trailers` (field lines with CRLFs), CRLF.
pub fn last_chunk(out: &mut Vec<u8>, trailers: &[u8]) {
    out.extend_from_slice(b"0\r\n");
    out.extend_from_slice(trailers);
    out.extend_from_slice(b"\r\n");
}

/// Decodes all of `input` (tests and the fuzz target): the data, the trailers and the bytes
/// used, or the error.
pub fn decode_all(
    input: &[u8],
    keep_trailers: bool,
) -> Result<(Vec<u8>, Vec<u8>, usize), ChunkError> {
    let mut d = Decoder::new(keep_trailers);
    let mut data = Vec::new();
    let mut at = 0;
    while at < input.len() && !d.is_done() {
        let step = d.feed(&input[at..])?;
        data.extend_from_slice(&input[at + step.data.0..at + step.data.1]);
        at += step.consumed;
        if step.consumed == 0 {
            break;
        }
    }
    if !d.is_done() {
        return Err(ChunkError);
    }
    Ok((data, d.trailers().to_vec(), at))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (data, trailers, used) = decode_all(body, true).unwrap();
        assert_eq!(data, b"hello world");
        assert_eq!(trailers, b"X-T: 1\r\n");
        assert_eq!(&body[used..], b"NEXT");
    }

    #[test]
    fn decodes_byte_by_byte() {
        let body = b"a\r\n0123456789\r\n0\r\n\r\n";
        let mut d = Decoder::new(false);
        let mut data = Vec::new();
        for &b in body.iter() {
            let one = [b];
            let step = d.feed(&one).unwrap();
            assert_eq!(step.consumed, 1);
            data.extend_from_slice(&one[step.data.0..step.data.1]);
        }
        assert!(d.is_done());
        assert_eq!(data, b"0123456789");
    }

    #[test]
    fn refuses_what_peers_disagree_on() {
        for bad in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
            b"\r\n",
            b"0\r\nX: 1\n\r\n",
            b"0\r\n folded\r\n\r\n",
            b"0\n\n",
        ] {
            assert!(
                decode_all(bad, false).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn encodes() {
        let mut out = Vec::new();
        chunk_header(&mut out, 255);
        out.extend_from_slice(&[b'x'; 255]);
        out.extend_from_slice(b"\r\n");
        last_chunk(&mut out, b"");
        let (data, _, _) = decode_all(&out, false).unwrap();
        assert_eq!(data.len(), 255);
    }
}
