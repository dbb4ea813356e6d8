//! Unencrypted PKCS#8 private key documents: their PEM armour (`-----BEGIN PRIVATE KEY-----`) and
//! the algorithm-specific key they wrap. Knows no algorithm; aws-lc-rs judges the key itself.
//!
//! Every buffer this module fills with key bytes or their base64 text is zeroized on drop.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const END: &str = "-----END PRIVATE KEY-----";

/// RFC 7468 lines carry exactly 64 base64 characters, the last one fewer.
const LINE_WIDTH: usize = 64;

/// Wraps a PKCS#8 DER document in PEM armour, ending with a newline.
pub(super) fn to_pem(der: &[u8]) -> Zeroizing<String> {
    let body = Zeroizing::new(STANDARD.encode(der));

    let mut pem = Zeroizing::new(String::with_capacity(body.len() + body.len() / LINE_WIDTH + 64));
    pem.push_str(BEGIN);
    pem.push('\n');
    // NB: base64 text is ASCII, so slicing it by bytes never splits a character.
    for line in body.as_bytes().chunks(LINE_WIDTH) {
        pem.extend(line.iter().map(|&b| char::from(b)));
        pem.push('\n');
    }
    pem.push_str(END);
    pem.push('\n');
    pem
}

/// Unwraps PEM armour back to the DER document, or `None` when the text is not exactly one
/// `PRIVATE KEY` block with valid base64 inside. Blank lines around the block and CRLF line
/// endings are accepted; anything else outside it is not.
pub(super) fn from_pem(pem: &str) -> Option<Zeroizing<Vec<u8>>> {
    let mut lines = pem.lines().map(str::trim_end).skip_while(|l| l.is_empty());
    if lines.next()? != BEGIN {
        return None;
    }

    let mut body = Zeroizing::new(String::with_capacity(pem.len()));
    loop {
        let line = lines.next()?;
        if line == END {
            break;
        }
        body.push_str(line);
    }
    if lines.any(|l| !l.is_empty()) {
        return None;
    }

    let der = Zeroizing::new(STANDARD.decode(body.as_bytes()).ok()?);
    (!der.is_empty()).then_some(der)
}

/// The `privateKey` octets of a PKCS#8 `PrivateKeyInfo` (RFC 5208): for RSA, the PKCS#1
/// `RSAPrivateKey` that jsonwebtoken signs with. `None` when `der` is not that structure.
pub(super) fn private_key(der: &[u8]) -> Option<&[u8]> {
    const INTEGER: u8 = 0x02;
    const OCTET_STRING: u8 = 0x04;
    const SEQUENCE: u8 = 0x30;

    let (SEQUENCE, info, []) = tlv(der)? else {
        return None;
    };
    let (INTEGER, _version, info) = tlv(info)? else {
        return None;
    };
    let (SEQUENCE, _algorithm, info) = tlv(info)? else {
        return None;
    };
    let (OCTET_STRING, key, _attributes) = tlv(info)? else {
        return None;
    };
    Some(key)
}

/// Splits one DER element off the front of `input`: its tag, its contents and what follows it.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;

    // Short form: the length itself. Long form: the count of big-endian length bytes that follow.
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (len, rest) = rest.split_at(count);
        (len.iter().fold(0, |acc, &b| acc << 8 | usize::from(b)), rest)
    };

    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `PrivateKeyInfo { version 0, AlgorithmIdentifier { rsaEncryption, NULL }, privateKey "key" }`
    const PRIVATE_KEY_INFO: [u8; 25] = [
        0x30, 0x17, 0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01,
        0x01, 0x05, 0x00, 0x04, 0x03, b'k', b'e', b'y',
    ];

    #[test]
    fn pem_text_decodes_to_the_same_bytes() {
        for len in [1, 47, 48, 49, 1217] {
            let der: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let pem = to_pem(&der);
            assert_eq!(from_pem(&pem).as_deref(), Some(&der));
        }
    }

    #[test]
    fn pem_text_has_the_armour_and_64_character_lines() {
        let pem = to_pem(&[0xAB; 100]);
        let lines: Vec<&str> = pem.lines().collect();

        assert_eq!(lines.first(), Some(&BEGIN));
        assert_eq!(lines.last(), Some(&END));
        assert!(pem.ends_with('\n'));
        let body = &lines[1..lines.len() - 1];
        assert!(body[..body.len() - 1].iter().all(|l| l.len() == LINE_WIDTH));
        assert!(body[body.len() - 1].len() <= LINE_WIDTH);
    }

    #[test]
    fn crlf_and_surrounding_blank_lines_are_accepted() {
        let pem = to_pem(b"some der bytes");
        let windows = format!("\r\n{}\r\n\r\n", pem.replace('\n', "\r\n"));
        assert_eq!(
            from_pem(&windows).as_deref().map(Vec::as_slice),
            Some(&b"some der bytes"[..])
        );
    }

    #[test]
    fn other_blocks_and_broken_armour_are_refused() {
        let good = to_pem(b"some der bytes").to_string();
        let cases = [
            String::new(),
            "not a pem at all".to_owned(),
            good.replace("PRIVATE KEY", "RSA PRIVATE KEY"),
            good.replace("PRIVATE KEY", "PUBLIC KEY"),
            good.replace(END, ""),
            good.replace(BEGIN, ""),
            format!("{good}{good}"),
            format!("junk\n{good}"),
            format!("{BEGIN}\n{END}\n"),
            format!("{BEGIN}\n!!!not base64!!!\n{END}\n"),
            format!("{BEGIN}\nc29tZQ\n{END}\n"),
        ];
        for case in cases {
            assert!(from_pem(&case).is_none(), "accepted {case:?}");
        }
    }

    #[test]
    fn private_key_is_the_octet_string_inside_private_key_info() {
        let der = PRIVATE_KEY_INFO;
        assert_eq!(private_key(&der), Some(&b"key"[..]));

        let mut long_form = vec![0x30, 0x81, 0x17];
        long_form.extend(&der[2..]);
        assert_eq!(private_key(&long_form), Some(&b"key"[..]));
    }

    #[test]
    fn private_key_refuses_truncated_or_foreign_structures() {
        let der = PRIVATE_KEY_INFO;
        for len in 0..der.len() {
            assert_eq!(private_key(&der[..len]), None, "accepted {len} bytes");
        }

        let mut trailing = der.to_vec();
        trailing.push(0);
        assert_eq!(private_key(&trailing), None);

        let mut bit_string = der;
        bit_string[20] = 0x03;
        assert_eq!(private_key(&bit_string), None);
    }
}
