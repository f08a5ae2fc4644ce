from pedigree.cli import main

main()
