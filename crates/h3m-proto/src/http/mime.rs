//! The `content-type` of a published file, by its extension.

/// The content type for a file name, by extension (nghq's list plus media
/// types; ASCII case-insensitive); `application/octet-stream` for the rest.
pub fn content_type_for(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "txt" => "text/plain; charset=UTF-8",
        "htm" | "html" => "text/html; charset=UTF-8",
        "css" => "text/css; charset=UTF-8",
        "js" | "mjs" => "text/javascript; charset=UTF-8",
        "json" => "application/json",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "gif" => "image/gif",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "tif" | "tiff" => "image/tiff",
        "pdf" => "application/pdf",
        "ps" | "eps" => "application/postscript",
        "rtf" => "application/rtf",
        "rdf" => "application/rdf+xml",
        "doc" => "application/msword",
        "mpd" => "application/dash+xml",
        "m3u8" => "application/vnd.apple.mpegurl",
        "mpg" | "mpeg" => "video/mpeg",
        "mp4" | "m4s" | "m4v" => "video/mp4",
        "m4a" => "audio/mp4",
        "ts" => "video/mp2t",
        "webm" => "video/webm",
        "wasm" => "application/wasm",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_extension() {
        assert_eq!(content_type_for("seg/1.M4S"), "video/mp4");
        assert_eq!(content_type_for("a.txt"), "text/plain; charset=UTF-8");
        assert_eq!(content_type_for("noext"), "application/octet-stream");
        assert_eq!(content_type_for("dir.d/noext"), "application/octet-stream");
    }
}
