//! QR codes for pairing: the raw value rendered as PNG and SVG.

use base64::Engine;
use qrcode::QrCode;
use qrcode::render::svg;

/// Pixels per QR module in the PNG.
const MODULE_PX: u32 = 8;

/// A rendered QR code.
#[derive(Debug, Clone)]
pub struct Qr {
    pub png: Vec<u8>,
    pub svg: String,
}

#[derive(Debug, thiserror::Error)]
pub enum QrError {
    #[error("value does not fit in a QR code: {0}")]
    Encode(#[from] qrcode::types::QrError),
    #[error("PNG encoding failed: {0}")]
    Png(#[from] image::ImageError),
}

impl Qr {
    pub fn render(value: &str) -> Result<Self, QrError> {
        let code = QrCode::new(value.as_bytes())?;
        let img = code
            .render::<image::Luma<u8>>()
            .module_dimensions(MODULE_PX, MODULE_PX)
            .quiet_zone(true)
            .build();
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
        let svg = code
            .render::<svg::Color<'_>>()
            .min_dimensions(256, 256)
            .quiet_zone(true)
            .build();
        Ok(Self { png, svg })
    }

    pub fn png_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.png)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_png_decodes_back_to_the_value() {
        let value = "2@abc,def+/=,ghi,jkl,WEB";
        let qr = Qr::render(value).unwrap();
        let img = image::load_from_memory(&qr.png).unwrap().to_luma8();
        let mut prepared = rqrr::PreparedImage::prepare(img);
        let grids = prepared.detect_grids();
        assert_eq!(grids.len(), 1);
        let (_, content) = grids[0].decode().unwrap();
        assert_eq!(content, value);
        assert!(qr.svg.starts_with("<?xml") && qr.svg.contains("<svg"));
    }
}
