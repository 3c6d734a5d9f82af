"""Which columns of a CSV manifest are the labels when the user names none, and manifests as Excel writes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from meddx.data import read_csv_manifest
from meddx.errors import DataError


def test_a_column_of_class_names_is_read_as_classes_without_being_named(tmp_path):
    """`meddx train --data labels.csv` with one column of class names stopped, asking for data.label_column."""
    (tmp_path / "m.csv").write_text("filename,finding\na.png,Normal\nb.png,Pneumonia\n")
    ds = read_csv_manifest(tmp_path / "m.csv", check_files=False)
    assert ds.label_names == ["Pneumonia"] and ds.labels[:, 0].tolist() == [0, 1]
    assert any("class names in column 'finding'" in n for n in ds.notes)
    with pytest.raises(DataError, match=r"'Normal' is not 0, 1.*--label-column finding"):
        read_csv_manifest(tmp_path / "m.csv", check_files=False, label_columns=["finding"])


@pytest.mark.parametrize("label", ["Normal,Pneumonia", "0,1"])
def test_the_column_named_like_a_label_is_chosen_beside_metadata(tmp_path, label):
    """Age and sex beside the label were read as label columns and stopped on '63'; the column named `label` is
    the label now (class names or 0/1), and the others are said to be unused."""
    a, b = label.split(",")
    (tmp_path / "m.csv").write_text(f"path,age,sex,Label\na.png,63,F,{a}\nb.png,41,M,{b}\n")
    ds = read_csv_manifest(tmp_path / "m.csv", check_files=False)
    assert ds.labels[:, 0].tolist() == [0, 1] and ds.task == "binary"
    assert any("['age', 'sex'] not read" in n for n in ds.notes)


def test_metadata_without_a_label_named_is_one_line_naming_the_columns(tmp_path):
    (tmp_path / "m.csv").write_text("path,age,finding_a,finding_b\na.png,63,x,0\nb.png,41,y,1\n")
    with pytest.raises(DataError, match=r"m.csv: column\(s\) \['finding_a'\] hold values other than 0/1") as e:
        read_csv_manifest(tmp_path / "m.csv", check_files=False)  # age is never a label: not named as one
    assert str(e.value).endswith("; a column of patient ids: --patient-column COLUMN")  # `child` beside 0/1 labels
    (tmp_path / "m.csv").write_text("path,a,b\na.png,1,0\nb.png,0,1\n")
    assert read_csv_manifest(tmp_path / "m.csv", check_files=False).task == "multilabel"


def test_0_1_columns_beside_age_and_sex_are_the_labels_and_the_others_are_named(tmp_path):
    """Sex and Age beside 0/1 finding columns stopped the guess ('hold values other than 0/1'), though the README
    lists such columns as unread; columns named like a covariate are never labels, and are named when unread."""
    (tmp_path / "m.csv").write_text("Image,Pneumonia,Viral,Sex,Age\na.png,1,0,F,63\nb.png,0,1,M,41\nc.png,0,0,F,7\n")
    ds = read_csv_manifest(tmp_path / "m.csv", check_files=False)
    assert ds.task == "multilabel" and ds.label_names == ["Pneumonia", "Viral"]
    assert any("['Sex', 'Age'] not read" in n for n in ds.notes)
    given = read_csv_manifest(tmp_path / "m.csv", check_files=False, label_columns=["Pneumonia"])
    assert any("['Viral', 'Sex', 'Age'] not read (--by COLUMN" in n for n in given.notes)


def test_manifests_from_excel_semicolons_and_windows_paths_read(tmp_path):
    """A semicolon-separated CSV (Excel in many European locales) was one column; `imgs\\x.png` was a missing file."""
    (tmp_path / "imgs").mkdir()
    _pngs(tmp_path / "imgs", [f"x{i}.png" for i in range(4)])
    rows = [f"imgs\\x{i}.png;{60 + i};{'Normal' if i % 2 else 'Abnormal'}" for i in range(4)]
    (tmp_path / "semi.csv").write_text("filename;age;diagnosis\n" + "\n".join(rows) + "\n")
    ds = read_csv_manifest(tmp_path / "semi.csv")
    assert [r.id for r in ds.records] == [f"imgs\\x{i}.png" for i in range(4)] and ds.label_names == ["Abnormal"]
    assert all(Path(r.source).is_file() for r in ds.records)
    (tmp_path / "climb.csv").write_text("filename;diagnosis\n..\\x0.png;Normal\nimgs\\x1.png;Abnormal\n")
    with pytest.raises(DataError, match="leave its folder"):  # a backslash climbs out as a slash would
        read_csv_manifest(tmp_path / "climb.csv")


def _csv(tmp_path, header: str, rows: list[str], name: str = "m.csv") -> Path:
    (tmp_path / name).write_text(header + "\n" + "\n".join(rows) + "\n")
    return tmp_path / name


def test_a_row_is_named_by_its_file_line_past_cells_quoted_across_lines(tmp_path):
    """A note quoted over three lines shifted every later row's line number by two; a blank line and Excel's
    trailing `,,` row still count as lines."""
    rows = ['a.png,1,"seen twice,\nsecond line\nthird"', "", "b.png,0,x", ",,", ",1,blank path here"]
    with pytest.raises(DataError, match=r"m\.csv row 8: blank image path"):
        read_csv_manifest(_csv(tmp_path, "path,label,note", rows), check_files=False)


def test_trailing_separators_and_leading_blank_lines_lose_no_column_and_no_line(tmp_path):
    """`a.png,1,` rows (a separator at each line's end) made pandas take the image paths as the index: the `path`
    column read the labels. Blank lines before the header crashed the line numbers. Cells past the header's: named."""
    from meddx.data.tables import line_numbers, read_table

    frame = read_table(_csv(tmp_path, "path,label", ["a.png,1,", "b.png,0,"]))
    assert frame["path"].tolist() == ["a.png", "b.png"] and frame["label"].tolist() == ["1", "0"]
    (tmp_path / "lead.csv").write_text("\n\npath,label\na.png,1\n\nb.png,0\n")
    assert line_numbers(read_table(tmp_path / "lead.csv")) == [4, 6]
    with pytest.raises(DataError, match=r"x\.csv: row 2 has 3 cells, the header names 2 columns"):
        read_table(_csv(tmp_path, "path,label", ["a.png,1,oops", "b.png,0,"], "x.csv"))


def test_a_patient_column_of_another_name_is_the_patient_not_ignored(tmp_path):
    """`path,subject,label` read `subject` as an unused column, each image its own patient: a patient on both sides
    of the split. A column of text ids repeated like a patient's is the patient now, and said."""
    rows = [f"a{i}.png,S{i // 2:02d},{i % 2}" for i in range(24)]
    ds = read_csv_manifest(_csv(tmp_path, "path,subject,label", rows), check_files=False)
    assert len({r.patient_id for r in ds.records}) == 12 and ds.task == "binary"
    rows = [f"a{i}.png,K{i // 2:02d},{i % 2}" for i in range(24)]
    ds = read_csv_manifest(_csv(tmp_path, "path,kit,label", rows), check_files=False)
    assert len({r.patient_id for r in ds.records}) == 12
    assert any("patient ids from column 'kit' (12 ids, repeated like a patient's" in n for n in ds.notes)
    rows = [f"img_{i:04d}.jpeg,child{i // 2:02d},{i % 2},{i % 2},0" for i in range(24)]  # labels named by the user
    ml = _csv(tmp_path, "image,child,pneumonia,bacteria,virus", rows, "ml.csv")
    ds = read_csv_manifest(ml, check_files=False, label_columns=["pneumonia", "bacteria", "virus"])
    assert len({r.patient_id for r in ds.records}) == 12 and ds.label_names == ["pneumonia", "bacteria", "virus"]
    assert not any("not read" in n for n in ds.notes)  # `child` was left unread: the split went by image
    rows = [f"a{i}.png,{'' if i == 9 else f'K{i // 2:02d}'},{i % 2}" for i in range(24)]  # one blank id
    ds = read_csv_manifest(_csv(tmp_path, "path,kit,label", rows, "blank.csv"), check_files=False)
    assert any("column 'kit' looks like patient ids but 1 of its cells are blank" in n for n in ds.notes)


def test_label_columns_as_people_and_excel_leave_them(tmp_path):
    """`path,label,is_male` trained two labels; Excel's trailing `;;` added blank labels; a lone `age` column was read
    as 40 classes; a column missing from val that is not read stopped the split files."""
    rows = [f"a{i}.png,{i % 2},{i // 2 % 2}" for i in range(8)]
    ds = read_csv_manifest(_csv(tmp_path, "path,label,is_male", rows), check_files=False)
    assert ds.label_names == ["label"] and any("['is_male'] not read" in n for n in ds.notes)
    semi = [f"a{i}.png;{i % 2};;" for i in range(8)]
    assert read_csv_manifest(_csv(tmp_path, "filename;label;;", semi), check_files=False).label_names == ["label"]
    with pytest.raises(DataError, match=r"no label column \(\['age'\] are covariates, never guessed as labels\)"):
        read_csv_manifest(_csv(tmp_path, "path,age", [f"a{i}.png,{20 + i}" for i in range(40)]), check_files=False)
    train = _csv(tmp_path, "path,age,label", [f"t{i}.png,{30 + i},{i % 2}" for i in range(6)], "train.csv")
    val = _csv(tmp_path, "path,label", [f"v{i}.png,{i % 2}" for i in range(4)], "val.csv")
    assert len(read_csv_manifest({"train": str(train), "val": str(val)}, check_files=False)) == 10
    quoted = _csv(tmp_path, 'path;"age, years";diagnosis', [f"a{i}.png;{40 + i};{'AB'[i % 2]}" for i in range(6)])
    assert read_csv_manifest(quoted, check_files=False).label_names == ["B"]


def test_meddx_predict_reads_the_csvs_training_reads(tmp_path):
    """`meddx predict scans.csv` read a semicolon file as one column and took `imgs\\x.png` as a file name."""
    from meddx.serve.batch import BLANK, expand_inputs

    path = _csv(tmp_path, "filename;age", ["imgs\\x0.png;60", "imgs\\x1.png;61", ";62"])
    expected = [(f"imgs\\x{i}.png", tmp_path / "imgs" / f"x{i}.png") for i in range(2)]
    assert expand_inputs([path]) == [*expected, (f"{path} row 4", BLANK)]  # the blank path: an error row, not dropped


@pytest.mark.parametrize("name", ["img", "image_path", "FILENAME", "Image_Path", "scan"])
def test_the_image_column_is_found_by_its_name_or_its_values(tmp_path, name):
    """`img`, `image_path`, `FILENAME`... stopped with "set image_column", an option the CLI did not have; a column
    of image file names is the image column whatever its name, and the line names --image-column otherwise."""
    rows = [f"x{i}.png,{i % 2},P{i // 2:03d}" for i in range(24)]
    ds = read_csv_manifest(_csv(tmp_path, f"{name},label,Subject ID", rows), check_files=False)
    assert [r.id for r in ds.records] == [f"x{i}.png" for i in range(24)]
    assert any("patient ids from column 'Subject ID'" in n for n in ds.notes)
    assert not any("'Subject ID'" in n and "not read" in n for n in ds.notes)
    with pytest.raises(DataError, match="no image path column .*; name it: --image-column COLUMN"):
        read_csv_manifest(_csv(tmp_path, "what,label", [f"{i},{i % 2}" for i in range(4)], "n.csv"), check_files=False)


def test_a_folder_of_images_beside_its_manifest_is_read_by_the_manifest(tmp_path):
    """`nihB/` holding `images/` and `manifest.csv` was read as class folders: "only one class found (['images'])"."""
    from meddx.config import DataConfig
    from meddx.data.readers import read_dataset

    _pngs(tmp_path / "nihB" / "images", [f"x{i}.png" for i in range(4)])
    _csv(tmp_path / "nihB", "path,label", [f"images/x{i}.png,{i % 2}" for i in range(4)], "manifest.csv")
    ds = read_dataset(DataConfig(path=str(tmp_path / "nihB")))
    assert len(ds) == 4 and ds.label_names == ["label"] and "read as its manifest manifest.csv" in ds.notes[-1]


def test_a_column_named_like_a_patient_that_holds_labels_is_not_the_patient(tmp_path):
    """`participant` holding case/control 0/1, or the label column itself, made two 'patients' and a split error."""
    rows = [f"x{i}.png,{i % 2},{'AB'[i % 2]}" for i in range(24)]
    ds = read_csv_manifest(_csv(tmp_path, "image,participant,label", rows), check_files=False)
    assert len({r.patient_id for r in ds.records}) == 24
    assert any("column 'participant' not used for patients: 2 values" in n for n in ds.notes)
    ds = read_csv_manifest(_csv(tmp_path, "image,participant", [r.rsplit(",", 1)[0] for r in rows], "p.csv"),
                           check_files=False, label_column="participant")  # fmt: skip
    assert len({r.patient_id for r in ds.records}) == 24 and ds.label_names == ["1"]


def test_a_csv_that_does_not_decode_is_one_line_for_predict_too(tmp_path):
    from meddx.serve.batch import expand_inputs

    (tmp_path / "w.csv").write_bytes("image,note\nx.png,caf\xe9\n".encode("cp1252"))
    with pytest.raises(DataError, match="w.csv: not a readable CSV"):
        expand_inputs([tmp_path / "w.csv"])
    (tmp_path / "f.csv").write_text("image,note\nx.png,1\ny.png,2,3\n")  # a row with a field too many
    with pytest.raises(DataError, match=r"f.csv: not a readable CSV \(ParserError: .*saw 3\)$") as e:
        expand_inputs([tmp_path / "f.csv"])
    assert "\n" not in str(e.value)


def test_predict_keeps_files_of_several_folders_apart(tmp_path):
    """`meddx predict RUN pf scans` gave two rows the id `IM-0115-0001.jpeg`; of several folders, ids keep theirs."""
    from meddx.serve.batch import expand_inputs

    _pngs(tmp_path / "pf", ["x.png"])
    _pngs(tmp_path / "scans" / "HC", ["x.png"])
    one = expand_inputs([tmp_path / "scans"])
    assert [i for i, _ in one] == ["HC/x.png"]  # one folder: ids relative to it, as `evaluate --data` names them
    two = expand_inputs([tmp_path / "pf", tmp_path / "scans"])
    assert [i for i, _ in two] == [f"{tmp_path}/pf/x.png", f"{tmp_path}/scans/HC/x.png"]


def test_a_predict_list_loses_no_row_to_a_missing_header_or_a_blank_path(tmp_path):
    """A list of bare paths lost its first line as the header, and a blank path was skipped: 2 rows out for 3 in,
    exit 0. The first line of a header-less list is a scan; a blank path is a row of its own (an error row)."""
    from meddx.serve.batch import BLANK, expand_inputs

    (tmp_path / "bare.csv").write_text("a.png\nb.png\n")
    assert [i for i, _ in expand_inputs([tmp_path / "bare.csv"])] == ["a.png", "b.png"]
    (tmp_path / "gaps.csv").write_text("image,note\na.png,1\n,2\nc.png,3\n")
    items = expand_inputs([tmp_path / "gaps.csv"])
    assert [i for i, _ in items] == ["a.png", f"{tmp_path / 'gaps.csv'} row 3", "c.png"] and items[1][1] == BLANK


def test_class_folders_beside_a_stray_csv_stay_class_folders(tmp_path):
    """`test/{NORMAL,PNEUMONIA}` beside `metadata.csv` (filename,sex) trained on sex; `images/{HC,PD}` beside a BIDS
    `participants.tsv` lost its hint. A CSV is the manifest only beside one folder of files."""
    from meddx.config import DataConfig
    from meddx.data.readers import read_dataset

    for cls in ("NORMAL", "PNEUMONIA"):
        _pngs(tmp_path / "k1" / "test" / cls, [f"{cls}{i}.png" for i in range(3)])
    _csv(tmp_path / "k1", "filename,sex", [f"NORMAL{i}.png,{'MF'[i % 2]}" for i in range(3)], "metadata.csv")
    assert read_dataset(DataConfig(path=str(tmp_path / "k1"))).label_names == ["PNEUMONIA"]
    (tmp_path / "k1" / "test").rename(tmp_path / "k1" / "images")
    with pytest.raises(DataError, match="if its 2 subfolders"):
        read_dataset(DataConfig(path=str(tmp_path / "k1")))


def test_a_folders_manifest_naming_bare_files_finds_them_in_its_images_folder(tmp_path):
    """`labels.csv` listing `x0.png` beside `images/x0.png` stopped: "4 image file(s) ... do not exist"."""
    from meddx.config import DataConfig
    from meddx.data.readers import read_dataset

    _pngs(tmp_path / "d" / "images", [f"x{i}.png" for i in range(4)])
    _csv(tmp_path / "d", "image,label", [f"x{i}.png,{i % 2}" for i in range(4)], "labels.csv")
    ds = read_dataset(DataConfig(path=str(tmp_path / "d")))
    assert all(Path(r.source).parent == tmp_path / "d" / "images" for r in ds.records)


def _pngs(folder: Path, names: list[str]) -> None:
    """Small grey PNGs of distinct brightness, the folder made."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(np.full((8, 8), 30 * i % 256, np.uint8)).save(folder / name)


@pytest.mark.parametrize("stray", ["2", "yes", "Pneumonai"])
def test_a_mistyped_class_is_one_line_naming_its_row_not_a_third_class(tmp_path, stray):
    """One row of 468 labelled `2` (or `yes`) beside 0/1 trained a three-class model with balanced weights giving the
    stray image a huge weight, and nothing said so; now it stops, naming the row. A small class of an evaluation
    set (2 pneumonias among 40 normals) is still read."""
    from meddx.config import DataConfig
    from meddx.data.readers import read_dataset

    a, b = ("0", "1") if stray in ("2", "yes") else ("Normal", "Pneumonia")
    rows = [f"{i}.png,{a if i % 2 else b}" for i in range(120)]
    rows[9] = f"9.png,{stray}"
    (tmp_path / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=rf"m.csv: class '{stray}' has 1 sample\(s\) \(.*m.csv row 11\).*a typo"):
        read_csv_manifest(tmp_path / "m.csv", check_files=False)
    rows[20] = "20.png,?"  # two typos: both named in the one line, not one per try
    (tmp_path / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=rf"classes .*'{stray}' has 1 sample.*row 11.*'\?' has 1 sample.*row 22"):
        read_csv_manifest(tmp_path / "m.csv", check_files=False)
    rows[30:45] = [f"{i}.png,note {i}" for i in range(30, 45)]  # a free-text column: ten named, the rest counted
    (tmp_path / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"row 22\).*'note 37'.*row 39\) and 7 more against"):
        read_csv_manifest(tmp_path / "m.csv", check_files=False)
    small = ["path,label"] + [f"{i}.png,Normal" for i in range(40)] + ["x.png,Pneumonia", "y.png,Pneumonia"]
    (tmp_path / "s.csv").write_text("\n".join(small) + "\n")
    assert read_csv_manifest(tmp_path / "s.csv", check_files=False).labels.sum() == 2
    folder = tmp_path / "f"
    _pngs(folder / "normal", [f"n{i}.png" for i in range(60)])
    _pngs(folder / "pneumonia", [f"p{i}.png" for i in range(60)])
    _pngs(folder / "pnuemonia", ["stray.png"])
    with pytest.raises(DataError, match=r"class 'pnuemonia' has 1 sample\(s\) \(.*pnuemonia/stray.png\)"):
        read_dataset(DataConfig(path=str(folder)))  # fmt: skip


def test_missing_images_found_in_a_folder_beside_the_manifest_name_it(tmp_path):
    """The course's train-small.csv names bare files kept in images-small/: the error listed them missing and
    stopped; it now also says where they are and which --root reads them."""
    _pngs(tmp_path / "images-small", ["a.png", "b.png"])
    rows = [f"{c}.png,p{i},{i % 2}" for i, c in enumerate("abcdefghijkl")]
    (tmp_path / "m.csv").write_text("Image,PatientId,Effusion\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"(?s)12 image file.*\n  2 of the first 12 are under .*images-small: --root "):
        read_csv_manifest(tmp_path / "m.csv")


def test_paths_written_from_the_working_folder_are_told_to_read_from_it(tmp_path, monkeypatch):
    """`data/x/images/a.png` in data/x/m.csv, relative to where the user stands: --root data/x/images (a folder
    holding the file by name) read data/x/images/data/x/images/a.png; the hint now finds the root the paths fit."""
    _pngs(tmp_path / "data" / "x" / "images", [f"{c}.png" for c in "abcdefghijkl"])
    rows = [f"data/x/images/{c}.png,p{i},{i % 2}" for i, c in enumerate("abcdefghijkl")]
    (tmp_path / "data" / "x" / "m.csv").write_text("Image,PatientId,Effusion\n" + "\n".join(rows) + "\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"(?s)12 image file.*\n  12 of the first 12 are under \.: --root \.$"):
        read_csv_manifest("data/x/m.csv")


def test_a_folder_given_as_a_split_file_is_named_as_such(tmp_path):
    """`--data train=FOLDER` said 'CSV manifest not found' of a folder that exists."""
    (tmp_path / "scans").mkdir()
    (tmp_path / "t.csv").write_text("path,label\na.png,1\n")
    with pytest.raises(DataError, match=r"scans: a folder; train=PATH takes a CSV \(or .npz; or all folders\)"):
        read_csv_manifest({"train": str(tmp_path / "scans"), "test": str(tmp_path / "t.csv")}, check_files=False)
