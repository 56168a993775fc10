//! Opening an image: [`Image::parse`] checks the whole metadata prefix once,
//! then hands out zero-copy views of its tables.

use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, KnownLayout};

use super::arch::{arch_params, ArchParams};
use super::error::{err, ErrorKind, ImageError, Location, SectionKind};
use super::header::ImageHeader;
use super::layout::{CostRecord, GeometryRecord, LayerRecord, TensorRecord, MINOR_TOKENIZER};
use super::lineage::Lineage;
use super::model::{BundleRegion, ModelGeometry, Placement, StoredCostModel, TensorInfo};
use super::sections::{read_sections, Sections};
use super::tables::{
    check_codecs, check_permutation, decode_cost, decode_geometry, decode_layer, decode_tensor,
    DataCursor,
};
use super::tokenizer::check_tokenizer;

/// An opened image: its metadata prefix, fully checked, borrowed in place.
///
/// Every offset, length, alignment, checksum and permutation of the
/// metadata was validated by [`Image::parse`], so the accessors only look
/// things up. The data (tensors, bundles) is not in the prefix; check it as
/// it is read with [`Image::verify_tensor`] and [`Image::verify_bundle`], or
/// all at once with [`Image::data_verifier`].
#[derive(Debug, Clone, Copy)]
pub struct Image<'a> {
    pub(crate) header: ImageHeader,
    pub(crate) geometry: ModelGeometry,
    pub(crate) strings: &'a [u8],
    pub(crate) tensors: &'a [TensorRecord],
    pub(crate) layers: &'a [LayerRecord],
    pub(crate) placement: &'a [U32],
    pub(crate) bundle_crcs: &'a [U32],
    pub(crate) codec_tags: &'a [u8],
    pub(crate) cost: Option<StoredCostModel>,
    pub(crate) tokenizer: Option<&'a [u8]>,
    pub(crate) lineage: Option<Lineage<'a>>,
    pub(crate) arch: Option<ArchParams>,
}

fn records<T: FromBytes + KnownLayout + Immutable>(
    bytes: &[u8],
    kind: SectionKind,
) -> Result<&[T], ImageError> {
    <[T]>::ref_from_bytes(bytes).map_err(|_| {
        err(
            ErrorKind::Malformed,
            Location::Section(kind),
            "length is not a whole number of records",
        )
    })
}

fn record<T: FromBytes + KnownLayout + Immutable>(
    bytes: &[u8],
    kind: SectionKind,
) -> Result<&T, ImageError> {
    T::ref_from_bytes(bytes).map_err(|_| {
        err(
            ErrorKind::Malformed,
            Location::Section(kind),
            "length is not the record's size",
        )
    })
}

/// The `n` entries of a per-bundle array that belong to a layer whose first
/// bundle is `first`, `None` when they are not all there.
fn per_bundle<T>(all: &[T], first: u64, n: u64) -> Option<&[T]> {
    let start = usize::try_from(first).ok()?;
    let end = start.checked_add(usize::try_from(n).ok()?)?;
    all.get(start..end)
}

impl<'a> Image<'a> {
    /// Open an image from its metadata prefix: at least
    /// [`ImageHeader::meta_len`] bytes from offset 0 (a longer slice, such as
    /// the whole file, is fine; bytes past the prefix are ignored).
    ///
    /// Checks the header, the section table, every section's CRC32C, every
    /// byte of padding in the prefix, the tables' internal consistency, the
    /// placement of every data extent inside the file, every placement
    /// permutation, and that every bundle's codec tag is one this reader
    /// decodes (`UnsupportedCodec` otherwise: only raw, `0`, exists).
    pub fn parse(prefix: &'a [u8]) -> Result<Image<'a>, ImageError> {
        let header = ImageHeader::parse(prefix)?;
        let meta = usize::try_from(header.meta_len)
            .ok()
            .and_then(|len| prefix.get(..len))
            .ok_or(err(
                ErrorKind::Truncated,
                Location::Header,
                "input is shorter than the metadata prefix",
            ))?;
        let sections = read_sections(&header, meta)?;
        Self::from_sections(header, &sections)
    }

    fn from_sections(header: ImageHeader, s: &Sections<'a>) -> Result<Image<'a>, ImageError> {
        use SectionKind as K;
        let geometry_rec: &GeometryRecord = record(s.require(K::Geometry)?, K::Geometry)?;
        let geometry = decode_geometry(geometry_rec)?;
        let cost = decode_cost(record::<CostRecord>(
            s.require(K::CostModel)?,
            K::CostModel,
        )?)?;
        let strings = s.require(K::Strings)?;
        let tensors: &[TensorRecord] = records(s.require(K::Tensors)?, K::Tensors)?;
        let layers: &[LayerRecord] = records(s.require(K::Layers)?, K::Layers)?;
        let placement: &[U32] = records(s.require(K::Placement)?, K::Placement)?;
        let bundle_crcs: &[U32] = records(s.require(K::BundleCrcs)?, K::BundleCrcs)?;
        let codec_tags = s.require(K::CodecTags)?;
        let tokenizer = s.get(K::Tokenizer);
        if let Some(bytes) = tokenizer {
            if header.minor < MINOR_TOKENIZER {
                return Err(err(
                    ErrorKind::Malformed,
                    Location::Section(K::Tokenizer),
                    "tokenizer section in an image of minor version 0",
                ));
            }
            check_tokenizer(bytes)?;
        }
        let lineage = s
            .get(K::Lineage)
            .map(|bytes| Lineage::parse(bytes, geometry.layers, header.minor))
            .transpose()?;
        let arch = arch_params(s.get(K::Arch), geometry.arch.as_str(), header.minor)?;

        let mut cursor = DataCursor::new(header.meta_len, header.file_len, header.block_size);
        let mut prev_name: Option<&[u8]> = None;
        for (i, rec) in tensors.iter().enumerate() {
            let info = decode_tensor(i, rec, strings, header.minor)?;
            let name = info.name.as_bytes();
            if prev_name.is_some_and(|prev| prev >= name) {
                return Err(err(
                    ErrorKind::Malformed,
                    Location::Tensor(i),
                    "names are not unique and sorted",
                ));
            }
            prev_name = Some(name);
            cursor.place(info.offset, info.length, Location::Tensor(i))?;
        }

        if layers.len() != geometry.layers as usize {
            return Err(err(
                ErrorKind::Malformed,
                Location::Section(K::Layers),
                "region count differs from the geometry's layer count",
            ));
        }
        let mut total: u64 = 0;
        for (l, rec) in layers.iter().enumerate() {
            let region = decode_layer(l, rec, geometry.hidden, header.minor)?;
            if region.first_bundle != total {
                return Err(err(
                    ErrorKind::Malformed,
                    Location::Layer(l),
                    "first bundle index is not the count of all earlier bundles",
                ));
            }
            total = total.checked_add(u64::from(region.count)).ok_or(err(
                ErrorKind::OutOfRange,
                Location::Layer(l),
                "bundle count overflows",
            ))?;
            cursor.place(region.offset, region.length, Location::Layer(l))?;
        }
        cursor.finish()?;

        let lengths = [
            (K::Placement, placement.len() as u64, total.checked_mul(2)),
            (K::BundleCrcs, bundle_crcs.len() as u64, Some(total)),
            (K::CodecTags, codec_tags.len() as u64, Some(total)),
        ];
        for (kind, have, want) in lengths {
            if Some(have) != want {
                return Err(err(
                    ErrorKind::Malformed,
                    Location::Section(kind),
                    "entries do not match the total bundle count",
                ));
            }
        }

        let image = Image {
            header,
            geometry,
            strings,
            tensors,
            layers,
            placement,
            bundle_crcs,
            codec_tags,
            cost,
            tokenizer,
            lineage,
            arch,
        };
        if arch.is_some_and(|a| a.approx_head) && image.tensor_by_name("output.weight").is_none() {
            return Err(err(
                ErrorKind::Malformed,
                Location::Section(K::Arch),
                "the approximate head flag is set but there is no output.weight",
            ));
        }
        for l in 0..layers.len() {
            let (perm, inverse) = image.placement_slices(l).ok_or(err(
                ErrorKind::OutOfRange,
                Location::Layer(l),
                "placement lies outside its section",
            ))?;
            check_permutation(perm, inverse, Location::Layer(l))?;
            check_codecs(image.codec_tags(l).unwrap_or_default(), l)?;
        }
        Ok(image)
    }

    /// The fixed header.
    pub fn header(&self) -> &ImageHeader {
        &self.header
    }

    /// The model's shape.
    pub fn geometry(&self) -> ModelGeometry {
        self.geometry
    }

    /// The stored device cost model, if the packer stored one.
    pub fn cost_model(&self) -> Option<StoredCostModel> {
        self.cost
    }

    /// The model's tokenizer: the bytes of the tokenizer section, a GGUF v3
    /// file with zero tensors holding `general.architecture` and the source
    /// model's `tokenizer.*` metadata (`Gguf::parse` accepts it; the open
    /// checked that). `None` for an image packed without one (every 1.0
    /// image).
    pub fn tokenizer_gguf(&self) -> Option<&'a [u8]> {
        self.tokenizer
    }

    /// Where a pruned image's layers came from (the lineage section, since
    /// 1.2); `None` for an image that holds every layer of its model.
    pub fn lineage(&self) -> Option<Lineage<'a>> {
        self.lineage
    }

    /// The attention parameters of a sliding-window model (the
    /// architecture section, since 1.3): present exactly when the
    /// geometry's architecture is [`SLIDING_WINDOW_ARCH`](super::SLIDING_WINDOW_ARCH).
    pub fn arch_params(&self) -> Option<ArchParams> {
        self.arch
    }

    /// Entries in the tensor table.
    pub fn tensor_count(&self) -> usize {
        self.tensors.len()
    }

    /// Tensor `index` of the table (sorted by name).
    pub fn tensor(&self, index: usize) -> Option<TensorInfo<'a>> {
        let rec = self.tensors.get(index)?;
        decode_tensor(index, rec, self.strings, self.header.minor).ok()
    }

    /// Every tensor, in table order (by name).
    pub fn tensors(&self) -> impl Iterator<Item = TensorInfo<'a>> + '_ {
        (0..self.tensors.len()).filter_map(|i| self.tensor(i))
    }

    /// The tensor called `name` and its index, by binary search.
    pub fn tensor_by_name(&self, name: &str) -> Option<(usize, TensorInfo<'a>)> {
        let strings = self.strings;
        let found = self.tensors.binary_search_by(|rec| {
            let start = rec.name_offset.get() as usize;
            let stored = start
                .checked_add(rec.name_len.get() as usize)
                .and_then(|end| strings.get(start..end))
                .unwrap_or_default();
            stored.cmp(name.as_bytes())
        });
        let index = found.ok()?;
        Some((index, self.tensor(index)?))
    }

    /// Layers (bundle regions) in the image.
    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    /// Layer `layer`'s bundle region.
    pub fn bundle_region(&self, layer: usize) -> Option<BundleRegion> {
        decode_layer(
            layer,
            self.layers.get(layer)?,
            self.geometry.hidden,
            self.header.minor,
        )
        .ok()
    }

    /// Every layer's bundle region, in layer order.
    pub fn layers(&self) -> impl Iterator<Item = BundleRegion> + '_ {
        (0..self.layers.len()).filter_map(|l| self.bundle_region(l))
    }

    fn region_span(&self, layer: usize) -> Option<(u64, u64)> {
        let rec = self.layers.get(layer)?;
        Some((rec.first_bundle.get(), u64::from(rec.count.get())))
    }

    fn placement_slices(&self, layer: usize) -> Option<(&'a [U32], &'a [U32])> {
        let (first, count) = self.region_span(layer)?;
        let both = per_bundle(self.placement, first.checked_mul(2)?, count.checked_mul(2)?)?;
        Some(both.split_at(usize::try_from(count).ok()?))
    }

    /// Layer `layer`'s placement: which neuron each position holds, and
    /// where each neuron is.
    pub fn placement(&self, layer: usize) -> Option<Placement<'a>> {
        let (perm, inverse) = self.placement_slices(layer)?;
        Some(Placement::new(perm, inverse))
    }

    /// Codec tags of layer `layer`'s bundles, by position (0 = raw).
    pub fn codec_tags(&self, layer: usize) -> Option<&'a [u8]> {
        let (first, count) = self.region_span(layer)?;
        per_bundle(self.codec_tags, first, count)
    }

    /// Codec tag of the bundle at position `pos` of layer `layer`.
    pub fn codec_tag(&self, layer: usize, pos: u32) -> Option<u8> {
        self.codec_tags(layer)?.get(pos as usize).copied()
    }

    /// CRC32C of the bundle at position `pos` of layer `layer`.
    pub fn bundle_crc(&self, layer: usize, pos: u32) -> Option<u32> {
        let (first, count) = self.region_span(layer)?;
        let crcs = per_bundle(self.bundle_crcs, first, count)?;
        crcs.get(pos as usize).map(|c| c.get())
    }

    /// Bundles in all layers together.
    pub fn total_bundles(&self) -> u64 {
        self.bundle_crcs.len() as u64
    }
}
