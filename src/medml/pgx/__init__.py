"""Pharmacogenomics: a patient's VCF -> star alleles -> phenotypes -> CPIC drug recommendations."""
