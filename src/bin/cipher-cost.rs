//! `cipher-cost`: what each TLS cipher costs in this build's own OpenSSL, so the cipher
//! order `localproxy` offers can be checked on the machine (or emulator) that runs it.
//! `cross/build.sh --cipher-cost TARGET` builds it with the router build's OpenSSL
//! options and runs it under qemu-user.
//!
//! It seals 16 KiB records (a TLS record's payload) with AES-256-GCM, AES-128-GCM and
//! ChaCha20-Poly1305 through OpenSSL's EVP interface and prints the time per MiB of
//! each, and the order `localproxy` would offer on this CPU. Figures only.

use openssl::symm::{encrypt_aead, Cipher};
use std::time::Instant;

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(4);
    let record = vec![0x5au8; 16 * 1024];
    let records = mib * 64;
    println!(
        "cipher-cost: {mib} MiB in 16 KiB records; localproxy offers {}",
        localproxy::run::tls_cipher_order()
    );
    let ciphers = [
        ("AES-256-GCM", Cipher::aes_256_gcm(), 32),
        ("AES-128-GCM", Cipher::aes_128_gcm(), 16),
        ("ChaCha20-Poly1305", Cipher::chacha20_poly1305(), 32),
    ];
    for (name, cipher, key_len) in ciphers {
        let key = vec![7u8; key_len];
        let iv = [9u8; 12];
        let mut tag = [0u8; 16];
        let start = Instant::now();
        for i in 0..records {
            let aad = (i as u64).to_be_bytes();
            if let Err(e) = encrypt_aead(cipher, &key, Some(&iv), &aad, &record, &mut tag) {
                println!("{name:<18} not available in this build: {e}");
                break;
            }
        }
        let ms = start.elapsed().as_secs_f64() * 1000.0 / mib as f64;
        println!("{name:<18} {ms:>9.2} ms per MiB");
    }
}
