//! Pieces of node config files that tests write.

use ordo_sdk::tls::TlsFiles;

/// The `[tls]` section of a node that presents `files`' key pair and trusts its CAs.
pub fn tls_section(files: &TlsFiles) -> String {
    let ca: Vec<String> = files
        .ca
        .iter()
        .map(|p| format!("\"{}\"", p.display()))
        .collect();
    format!(
        "[tls]\nenabled = true\ncert_file = \"{}\"\nkey_file = \"{}\"\nca_files = [{}]\n",
        files.cert.display(),
        files.key.display(),
        ca.join(", ")
    )
}
